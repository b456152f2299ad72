#!/bin/sh
# svc: start/stop/status of this host's services where no systemd runs (the lab).
# Each service is /etc/{{project}}/services/NAME.conf defining RUN_AS and CMD; its pid file is
# /var/lib/{{project}}/run/NAME.pid and its log /var/log/{{project}}/NAME.log.
# The boot hook (/etc/{{project}}/boot.sh) runs `svc start-all` after a (re)boot.
# Where systemd runs (AWS), the same commands drive the unit {{project}}-service@NAME
# (templates/systemd/, installed from /opt/{{project}}/systemd by this script), enabled so the
# service comes back after a reboot without the boot hook.
set -eu
conf_dir=/etc/{{project}}/services
run_dir=/var/lib/{{project}}/run
log_dir=/var/log/{{project}}
mkdir -p "$run_dir" "$log_dir"

# systemd is the init system when this directory exists (sd_booted(3)). The SVC_* overrides
# exist for the unit test of this script only.
systemd_dir=${SVC_SYSTEMD_DIR:-/run/systemd/system}
unit_dir=${SVC_UNIT_DIR:-/etc/systemd/system}
unit_src=/opt/{{project}}/systemd/{{project}}-service@.service
unit={{project}}-service@

# Installs (or updates) the unit template; systemd reads it again only when it changed.
install_unit() {
  if ! cmp -s "$unit_src" "$unit_dir/$unit.service"; then
    cp "$unit_src" "$unit_dir/$unit.service.tmp" && mv "$unit_dir/$unit.service.tmp" "$unit_dir/$unit.service"
    systemctl daemon-reload
  fi
}

sd_start() {
  [ -f "$conf_dir/$1.conf" ] || { echo "svc: no service $1" >&2; exit 2; }
  install_unit
  systemctl enable --now "$unit$1.service"
  sleep 0.3
  systemctl is-active --quiet "$unit$1.service" || {
    echo "svc: $1 exited at start; last lines of $log_dir/$1.log:" >&2; tail -n 20 "$log_dir/$1.log" >&2 || true; exit 1; }
  echo "svc: started $1 ($unit$1)"
}

if [ -d "$systemd_dir" ]; then
  case "${1:-}" in
    start) sd_start "$2" ;;
    stop) systemctl stop "$unit$2.service"; echo "svc: stopped $2" ;;
    restart) install_unit; systemctl enable "$unit$2.service"; systemctl restart "$unit$2.service"; echo "svc: restarted $2" ;;
    status) if systemctl is-active --quiet "$unit$2.service"; then echo "running (pid $(systemctl show -p MainPID --value "$unit$2.service"))"; else echo stopped; exit 3; fi ;;
    start-all) for f in "$conf_dir"/*.conf; do [ -e "$f" ] || continue; sd_start "$(basename "$f" .conf)" || true; done ;;
    *) echo "usage: svc start|stop|restart|status NAME | start-all" >&2; exit 2 ;;
  esac
  exit 0
fi

RESTART_MS_MIN=100
RESTART_MS_MAX=10000
RESTART_RESET_S=30

# True while the service's supervisor lives (the service itself may be between restarts).
running() { [ -f "$run_dir/$1.pid" ] && kill -0 "$(cat "$run_dir/$1.pid")" 2>/dev/null; }
# The pid of the service process the supervisor runs now (empty between restarts).
child() { [ -f "$run_dir/$1.pid" ] && pgrep -P "$(cat "$run_dir/$1.pid")" 2>/dev/null | head -n 1; }

# The supervisor loop: $0 pid file, $1 user, $2 command, $3 name.
SUPERVISE='echo $$ > "$0"
delay_ms='$RESTART_MS_MIN'
while :; do
  t0=$(date +%s)
  runuser -u "$1" -- sh -c "exec $2" &
  wait $!
  rc=$?
  ran_s=$(( $(date +%s) - t0 ))
  [ "$ran_s" -ge '$RESTART_RESET_S' ] && delay_ms='$RESTART_MS_MIN'
  echo "svc: $3 exited (status $rc) after ${ran_s} s; restarting in ${delay_ms} ms"
  sleep "$(( delay_ms / 1000 )).$(printf %03d $(( delay_ms % 1000 )))"
  delay_ms=$(( delay_ms * 2 ))
  [ "$delay_ms" -gt '$RESTART_MS_MAX' ] && delay_ms='$RESTART_MS_MAX'
done'

start() {
  name=$1
  [ -f "$conf_dir/$name.conf" ] || { echo "svc: no service $name" >&2; exit 2; }
  if running "$name"; then echo "svc: $name already running"; return 0; fi
  RUN_AS=root; CMD=; PRE=
  . "$conf_dir/$name.conf"
  [ -n "$PRE" ] && sh -c "$PRE"
  touch "$log_dir/$name.log"; chown "$RUN_AS" "$log_dir/$name.log" 2>/dev/null || true
  # A supervisor in its own session and process group (`stop` ends the whole group): it runs
  # the service and restarts it whenever it exits, after a backoff that starts at
  # RESTART_MS_MIN, doubles on each quick exit up to RESTART_MS_MAX, and starts over once the
  # service ran for RESTART_RESET_S. As systemd's Restart=always does where systemd runs.
  log_size=$(wc -c < "$log_dir/$name.log")
  cd /
  setsid sh -c "$SUPERVISE" "$run_dir/$name.pid" "$RUN_AS" "$CMD" "$name" >>"$log_dir/$name.log" 2>&1 </dev/null &
  sleep 0.3
  if tail -c "+$((log_size + 1))" "$log_dir/$name.log" | grep -q "^svc: $name exited"; then
    echo "svc: $name exited at start; last lines of $log_dir/$name.log:" >&2; tail -n 20 "$log_dir/$name.log" >&2
    stop "$name" >/dev/null; exit 1
  fi
  running "$name" || { echo "svc: $name exited at start; last lines of $log_dir/$name.log:" >&2; tail -n 20 "$log_dir/$name.log" >&2; exit 1; }
  echo "svc: started $name (supervisor pid $(cat "$run_dir/$name.pid"))"
}

stop() {
  name=$1
  if running "$name"; then
    pid=$(cat "$run_dir/$name.pid")
    # The supervisor first (no restart), then the service: wait for the whole group to end.
    kill -TERM "$pid" 2>/dev/null || true
    kill -TERM "-$pid" 2>/dev/null || true
    i=0; while kill -0 "-$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    kill -KILL "-$pid" 2>/dev/null || true
  fi
  rm -f "$run_dir/$name.pid"
  echo "svc: stopped $name"
}

case "${1:-}" in
  start) start "$2" ;;
  stop) stop "$2" ;;
  restart) stop "$2"; start "$2" ;;
  status) if running "$2"; then echo "running (pid $(child "$2"))"; else echo stopped; exit 3; fi ;;
  start-all) for f in "$conf_dir"/*.conf; do [ -e "$f" ] || continue; n=$(basename "$f" .conf); start "$n" || true; done ;;
  *) echo "usage: svc start|stop|restart|status NAME | start-all" >&2; exit 2 ;;
esac
