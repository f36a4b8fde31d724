# Shared by run.sh and ab.sh (sourced, after `work` and `pids` are set): ports, the nginx pair, the demo, sign-in.

[ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx || NGINX=$(command -v nginx)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# start_nginx UPSTREAM_PORT PROXY_PORT: the fixed upstream and nginx as a reverse proxy to it, with a keep-alive
# pool; one nginx process, two servers, one worker per core.
start_nginx() {
  local up=$1 ng=$2
  cat > "$work/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body; proxy_temp_path $work/proxy; fastcgi_temp_path $work/fcgi;
  uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
  upstream fixed { server 127.0.0.1:$up; keepalive 128; }
  server { listen 127.0.0.1:$up; location / { default_type text/plain; return 200 "hello from the upstream\n"; } }
  server {
    listen 127.0.0.1:$ng;
    location / {
      proxy_pass http://fixed; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$remote_addr;
    }
  }
}
CONF
  "$NGINX" -p "$work" -c "$work/nginx.conf" & pids+=($!)
}

# start_demo BINARY NAME PORT UPSTREAM_PORT [demo arguments...]: `postern demo` in front of the fixed upstream,
# its output in $work/NAME.out; returns once its provider is up. Its pid is the last of `pids`.
start_demo() {
  local bin=$1 name=$2 port=$3 up=$4; shift 4
  "$bin" demo --listen "127.0.0.1:$port" --upstream "http://127.0.0.1:$up" "$@" > "$work/$name.out" 2> "$work/$name.err" &
  pids+=($!)
  for _ in $(seq 100); do grep -q "Development OpenID provider" "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
}

# sign_in BASE: signs in as alice through the demo's provider and prints the session cookie's value.
sign_in() {
  local jar="$work/jar-$RANDOM" a b
  loc() { curl -s -o /dev/null -c "$jar" -b "$jar" -H 'Accept: text/html' -w '%{redirect_url}' "$1"; }
  a=$(loc "$1/"); b=$(loc "$a&login_hint=alice"); loc "$b" > /dev/null
  awk '$6 == "postern" {print $7}' "$jar"
}
