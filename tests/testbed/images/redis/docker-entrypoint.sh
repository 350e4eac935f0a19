#!/bin/bash
# Entrypoint of the offline Redis stand-in, behaving like the official image's:
# - `docker run redis --flag` / `docker run redis /path/redis.conf` run redis-server;
# - as root, make /data the redis user's and drop to that user;
# - protected mode off unless the command line or the config file sets it (the official image
#   compiles that default in; Debian's binary defaults to on).
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = "redis-server" ]; then
  conf=""
  [ "${2%.conf}" != "${2:-}" ] && conf="$2"
  case " $* " in
    *" --protected-mode "*) ;;
    *)
      if [ -z "$conf" ] || ! grep -qE '^[[:space:]]*protected-mode[[:space:]]' "$conf" 2>/dev/null; then
        set -- "$@" --protected-mode no
      fi
      ;;
  esac
  if [ "$(id -u)" = "0" ]; then
    find . \! -user redis -exec chown redis '{}' +
    umask 0077
    exec gosu redis "$@"
  fi
fi
exec "$@"
