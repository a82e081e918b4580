#!/bin/sh
# A throwaway CA and a server certificate it signed, for tests of TLS to PostgreSQL:
# in the current directory, ca.pem (the CA), server.pem and server.key (mode 600) for the IP
# address given (in subjectAltName). P-256 keys, valid two days. Needs the openssl command.
# Usage: sh tests/make-certs.sh IP
set -eu
ip=$1
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj "/CN=leasedns test CA" 2>/dev/null
openssl req $ec -keyout server.key -out server.csr -subj "/CN=$ip" 2>/dev/null
printf 'subjectAltName=IP:%s\n' "$ip" > san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile san.ext -out server.pem 2>/dev/null
chmod 600 server.key
