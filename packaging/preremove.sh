#!/bin/sh
# hubd prerm: on removal (not on upgrade) stop and disable the service.
set -e

case "$1" in
remove | purge | "")
	if [ -d /run/systemd/system ]; then
		systemctl stop hubd.service || true
		systemctl disable hubd.service || true
	fi
	;;
esac
exit 0
