#!/bin/bash
# aw-healthcheck -- the container's HEALTHCHECK: GET /healthz on the worker's operations port
# (AW_HEALTH_PORT, the image sets 8080) and succeed on "200".  The runtime image has no curl or
# wget on purpose (nothing but the worker's libraries); bash, which debian:12-slim has anyway, can
# speak enough HTTP through /dev/tcp.  Kubernetes ignores HEALTHCHECK (the chart's probes do the
# same), docker and compose use it.
set -u
port=${AW_HEALTH_PORT:-8080}
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
IFS=' ' read -r -t 5 _ code _ <&3 || exit 1
[ "$code" = 200 ]
