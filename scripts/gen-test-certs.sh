#!/usr/bin/env bash
# Generates a throw-away PKI for TLS tests and local trials (never for
# production): a self-signed CA, a server certificate for localhost /
# 127.0.0.1 / ::1 (subjectAltName), and a client certificate for mutual TLS.
#
# Usage: scripts/gen-test-certs.sh DIR [CN_PREFIX]
# Writes DIR/ca.pem ca.key server.pem server.key client.pem client.key
# (EC P-256 keys, valid 30 days). Needs only the openssl CLI.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 DIR [CN_PREFIX]" >&2
  exit 2
fi
dir=$1
prefix=${2:-openelm-test}
mkdir -p "$dir"
cd "$dir"
umask 077

days=30
newkey() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }

# Certificate authority.
newkey ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -out ca.pem \
  -subj "/CN=${prefix} CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

# sign NAME CN EXT_FILE: a certificate for NAME.key signed by the CA.
sign() {
  local name=$1 cn=$2 ext=$3
  newkey "$name.key"
  openssl req -new -key "$name.key" -subj "/CN=${cn}" -out "$name.csr" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -days "$days" -sha256 -extfile "$ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr"
}

cat > server.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EXT
sign server "${prefix} server" server.ext

cat > client.ext <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EXT
sign client "${prefix} client" client.ext

rm -f server.ext client.ext ca.srl
# Keys stay private (0600 from umask); certificates are public.
chmod 644 ca.pem server.pem client.pem
echo "gen-test-certs: wrote $(pwd)/{ca,server,client}.{pem,key}"
