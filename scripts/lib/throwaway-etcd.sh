# Sourced by scripts: start_throwaway_etcd starts a single etcd member on free
# loopback ports with a temporary data directory, exports ETCDLOCK_ENDPOINTS,
# and arranges for the member to be stopped, by its PID, when the script exits.

_throwaway_etcd_pid=""
_throwaway_etcd_dir=""

stop_throwaway_etcd() {
  if [[ -n "$_throwaway_etcd_pid" ]]; then
    kill "$_throwaway_etcd_pid" 2>/dev/null || true
    wait "$_throwaway_etcd_pid" 2>/dev/null || true
    _throwaway_etcd_pid=""
  fi
  if [[ -n "$_throwaway_etcd_dir" ]]; then
    rm -rf "$_throwaway_etcd_dir"
    _throwaway_etcd_dir=""
  fi
}

_port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

_free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    _port_in_use "$port" || { echo "$port"; return; }
  done
}

start_throwaway_etcd() {
  _throwaway_etcd_dir=$(mktemp -d "${TMPDIR:-/tmp}/etcdlock-demo-XXXXXX")
  trap stop_throwaway_etcd EXIT
  local client peer attempt
  for attempt in 1 2 3 4 5; do
    client=$(_free_port)
    peer=$(_free_port)
    etcd --name demo --data-dir "$_throwaway_etcd_dir/data" \
      --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "demo=http://127.0.0.1:$peer" \
      --heartbeat-interval 10 --election-timeout 100 --logger zap --log-level error \
      >"$_throwaway_etcd_dir/etcd.log" 2>&1 &
    _throwaway_etcd_pid=$!
    for _ in $(seq 100); do
      if etcdctl --endpoints="127.0.0.1:$client" --command-timeout=500ms endpoint health >/dev/null 2>&1; then
        export ETCDLOCK_ENDPOINTS="127.0.0.1:$client"
        return 0
      fi
      kill -0 "$_throwaway_etcd_pid" 2>/dev/null || break  # lost a port race: try others
      sleep 0.05
    done
    kill "$_throwaway_etcd_pid" 2>/dev/null || true
    wait "$_throwaway_etcd_pid" 2>/dev/null || true
    rm -rf "$_throwaway_etcd_dir/data"
  done
  echo "could not start a local etcd; its log:" >&2
  cat "$_throwaway_etcd_dir/etcd.log" >&2
  return 1
}
