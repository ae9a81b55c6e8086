# Sourced by the install scripts: `apt_install PACKAGE...` installs Debian
# packages quietly (as root, or through sudo), after one `apt-get update`.
apt_install() {
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "installing (apt): $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
