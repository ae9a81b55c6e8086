// OpenSSL 3 (Debian's libssl-dev): digests, random bytes, AES-GCM and TLS.
#include <openssl/sha.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
