#!/bin/sh
# svc: start/stop/status of this host's services where no systemd runs (the lab).
# Each service is /etc/{{project}}/services/NAME.conf defining RUN_AS and CMD; its pid file is
# /var/lib/{{project}}/run/NAME.pid and its log /var/log/{{project}}/NAME.log.
# The boot hook (/etc/{{project}}/boot.sh) runs `svc start-all` after a (re)boot.
set -eu
conf_dir=/etc/{{project}}/services
run_dir=/var/lib/{{project}}/run
log_dir=/var/log/{{project}}
mkdir -p "$run_dir" "$log_dir"

running() { [ -f "$run_dir/$1.pid" ] && kill -0 "$(cat "$run_dir/$1.pid")" 2>/dev/null; }

start() {
  name=$1
  [ -f "$conf_dir/$name.conf" ] || { echo "svc: no service $name" >&2; exit 2; }
  if running "$name"; then echo "svc: $name already running"; return 0; fi
  RUN_AS=root; CMD=; PRE=
  . "$conf_dir/$name.conf"
  [ -n "$PRE" ] && sh -c "$PRE"
  touch "$log_dir/$name.log"; chown "$RUN_AS" "$log_dir/$name.log" 2>/dev/null || true
  # Own session and process group: `stop` ends the whole group.
  cd /
  setsid sh -c 'echo $$ > "$0"; exec runuser -u "$1" -- sh -c "exec $2"' \
    "$run_dir/$name.pid" "$RUN_AS" "$CMD" >>"$log_dir/$name.log" 2>&1 </dev/null &
  sleep 0.2
  running "$name" || { echo "svc: $name exited at start; last lines of $log_dir/$name.log:" >&2; tail -n 20 "$log_dir/$name.log" >&2; exit 1; }
  echo "svc: started $name (pid $(cat "$run_dir/$name.pid"))"
}

stop() {
  name=$1
  if running "$name"; then
    pid=$(cat "$run_dir/$name.pid")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$run_dir/$name.pid"
  echo "svc: stopped $name"
}

case "${1:-}" in
  start) start "$2" ;;
  stop) stop "$2" ;;
  restart) stop "$2"; start "$2" ;;
  status) if running "$2"; then echo running; else echo stopped; exit 3; fi ;;
  start-all) for f in "$conf_dir"/*.conf; do [ -e "$f" ] || continue; n=$(basename "$f" .conf); start "$n" || true; done ;;
  *) echo "usage: svc start|stop|restart|status NAME | start-all" >&2; exit 2 ;;
esac
