#!/usr/bin/env bash
# Makes the secrets docker-compose.yml mounts, in compose/secrets/:
#   redis-password     a random password: Redis' requirepass, read by the API and
#                      the workers through REDIS_PASSWORD_FILE
#   api-clients.json   the API's auth file (SPOOL_AUTH_FILE) with one client,
#                      "admin" (every scope, every queue); add your own entries
#                      with `spool-api token` (README, "Security")
#   admin-token        that client's token, for you (no container mounts it; the
#                      auth file holds only its SHA-256)
# Leaves existing files alone, so running it again changes nothing.
#
# Modes: the directory is 0700 (only you on this host); the two mounted files are
# 0644 because a bind mount keeps the host's owner and mode, and the containers
# read them as other users (spool: 10001, redis: 999).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p secrets
chmod 700 secrets

if [[ ! -s secrets/redis-password ]]; then
  # URL-safe characters only, so it also fits a redis:// URL if you ever need one.
  head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32 > secrets/redis-password
  chmod 644 secrets/redis-password
  echo "made secrets/redis-password"
fi

if [[ ! -s secrets/api-clients.json ]]; then
  token="spool_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  digest=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
  printf '{"clients": [\n  {"id": "admin", "token_sha256": "%s", "scopes": ["admin"], "queues": ["*"], "note": "made by make-secrets.sh"}\n]}\n' \
    "$digest" > secrets/api-clients.json
  chmod 644 secrets/api-clients.json
  (umask 077 && printf '%s\n' "$token" > secrets/admin-token)
  echo "made secrets/api-clients.json; the admin token is in secrets/admin-token"
fi
