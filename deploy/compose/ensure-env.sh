#!/usr/bin/env bash
# `make up` runs this first: Compose reads .env (beside docker-compose.yml) for the variables its files use.
#   * no .env: create it from .env.example (mode 0600: it holds secrets);
#   * no SF_ADMIN_KEY in it (missing or empty): generate one, `sf_` + 43 URL-safe random characters, the
#     shape of the keys `service-feature apikey create` makes. The gateway registers it as an admin API key
#     at start; `make admin-key` prints it.
# SF_ADMIN_KEY set in the shell wins over .env in Compose: then the file is left as it is.
# Usage: deploy/compose/ensure-env.sh [ENV_FILE [EXAMPLE_FILE]]   (defaults: .env, .env.example)
set -euo pipefail

env_file="${1:-.env}"
example="${2:-.env.example}"

if [ ! -e "$env_file" ]; then
  (umask 077 && cp "$example" "$env_file")
  echo "created $env_file from $example"
fi

# .env holds secrets: say so when git would take it into a commit (check-ignore: 1 = not ignored).
ignored=0
git check-ignore -q "$env_file" 2>/dev/null || ignored=$?
if [ "$ignored" = 1 ]; then
  echo "warning: git does not ignore $env_file, which holds secrets: add it to .gitignore" >&2
fi

if [ -n "${SF_ADMIN_KEY:-}" ]; then
  echo "SF_ADMIN_KEY is set in this shell: Compose uses it, not the one in $env_file"
  exit 0
fi

if grep -qE '^SF_ADMIN_KEY=.+' "$env_file"; then
  exit 0
fi

# 32 random bytes, base64url without padding: what Python's secrets.token_urlsafe(32) gives.
key="sf_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
updated="$(mktemp "${env_file}.XXXXXX")"
trap 'rm -f "$updated"' EXIT
# Replace an empty `SF_ADMIN_KEY=` line, or append one; every other line is kept as it is.
awk -v key="$key" '
  /^SF_ADMIN_KEY=/ { print "SF_ADMIN_KEY=" key; done = 1; next }
  { print }
  END { if (!done) print "SF_ADMIN_KEY=" key }
' "$env_file" >"$updated"
chmod 600 "$updated"
mv "$updated" "$env_file"
trap - EXIT
echo "generated an admin API key: SF_ADMIN_KEY in $env_file (make admin-key prints it)"
