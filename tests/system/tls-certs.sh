#!/usr/bin/env bash
# Test certificates for the TLS tests, made with the openssl CLI into DIR:
#   ca.pem            CA "libim test CA"
#   ca2.pem           a second, unrelated CA
#   server.pem/.key   signed by ca, for localhost and 127.0.0.1
#   server2.pem/.key  signed by ca2, same names (a reload's new certificate)
#   expired.pem/.key  signed by ca, same names, valid in 2020 only
#   client.pem/.key   a client certificate signed by ca
# P-256 keys: fast to make. Usage: tls-certs.sh DIR
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
san="subjectAltName=DNS:localhost,IP:127.0.0.1"

for ca in ca ca2; do
	openssl req -x509 "${ec[@]}" -keyout $ca.key -out $ca.pem -days 2 \
		-subj "/CN=libim test $ca" 2>/dev/null
done

# name signer CN extension...: a key and a certificate signed by signer.
sign() {
	local name=$1 signer=$2 cn=$3
	shift 3
	openssl req -new "${ec[@]}" -keyout "$name.key" -out "$name.csr" \
		-subj "/CN=$cn" 2>/dev/null
	openssl x509 -req -in "$name.csr" -CA "$signer.pem" \
		-CAkey "$signer.key" -CAcreateserial -days 2 -out "$name.pem" \
		"$@" 2>/dev/null
}
printf '%s\n' "$san" >server.ext
printf '%s\n' "extendedKeyUsage=clientAuth" >client.ext
sign server ca localhost -extfile server.ext
sign server2 ca2 localhost -extfile server.ext
sign client ca "libim test client" -extfile client.ext

# An expired certificate: `openssl x509 -req` cannot date one in the
# past, `openssl ca` can (it needs a small database of its own).
mkdir -p ca-db
: >ca-db/index.txt
echo 1000 >ca-db/serial
cat >ca-db/ca.cnf <<EOF
[ca]
default_ca = test
[test]
database = ca-db/index.txt
serial = ca-db/serial
new_certs_dir = ca-db
default_md = sha256
policy = any
x509_extensions = ext
[any]
commonName = supplied
[ext]
$san
EOF
openssl req -new "${ec[@]}" -keyout expired.key -out expired.csr \
	-subj "/CN=localhost" 2>/dev/null
openssl ca -batch -config ca-db/ca.cnf -cert ca.pem -keyfile ca.key \
	-startdate 20200101000000Z -enddate 20200102000000Z -notext \
	-in expired.csr -out expired.pem 2>/dev/null
chmod 600 ./*.key
