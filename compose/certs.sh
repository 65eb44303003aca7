#!/bin/sh
# The lab's secrets, made with openssl into DIR (default: compose/secrets); files that exist are
# kept, so running it again changes nothing:
#
#   ca.crt, ca.key                 the lab's CA
#   cp.crt, cp.key                 the control plane (API and xDS server): DNS cp, localhost,
#                                  IP 172.30.13.2 and 127.0.0.1
#   <node>.crt, <node>.key         each Envoy and each agent, a client certificate whose URI SAN
#                                  is spiffe://controlplane/group/<group>/node/<node>
#   <agent>.token, admin.token     bearer tokens (random), and tokens.yaml with their digests
#
# A production setup makes the same files the same way, with its own names and addresses.
set -eu
dir=${1:-$(cd "$(dirname "$0")" && pwd)/secrets}
days=${CP_LAB_CERT_DAYS:-30}
envoys="l4:l4-envoy l7:l7-envoy-1 l7:l7-envoy-2"
agents="l4:l4-haproxy l7:l7-haproxy-1 l7:l7-haproxy-2"

umask 077
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
token() { [ -f "$1" ] || openssl rand -hex 24 | tr -d '\n' > "$1"; }
digest() { printf %s "$(cat "$1")" | sha256sum | cut -d' ' -f1; }

# sign NAME SUBJECT_ALT_NAMES EXTENDED_KEY_USAGE: NAME.key and NAME.crt signed by the CA
sign() {
  [ -f "$1.crt" ] && return 0
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$1" -out "$1.csr"
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' \
    "$2" "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

if [ ! -f ca.crt ]; then
  key ca.key
  openssl req -new -x509 -key ca.key -subj "/CN=controlplane lab CA" -days "$days" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.crt
fi
sign cp "DNS:cp,DNS:localhost,IP:172.30.13.2,IP:127.0.0.1" serverAuth
for entry in $envoys $agents; do
  group=${entry%%:*} node=${entry#*:}
  sign "$node" "URI:spiffe://controlplane/group/$group/node/$node" clientAuth
done

token admin.token
{
  echo "# The lab's API tokens (digests only): made by compose/certs.sh."
  echo "- {name: admin, sha256: $(digest admin.token), scopes: [read, write]}"
  for entry in $agents; do
    group=${entry%%:*} node=${entry#*:}
    token "$node.token"
    # an agent's token fetches (and reports for) its own group's bundle, nothing else
    echo "- {name: $node, sha256: $(digest "$node.token"), scopes: [agent], groups: [$group]}"
  done
} > tokens.yaml
echo "$dir"
