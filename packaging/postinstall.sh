#!/bin/sh
# hubd postinst: the hubd system user the unit runs as, then systemd told
# about the unit. The service is not started: set HUB_ADMIN_TOKEN and the
# rest in /etc/default/hubd first, then `systemctl enable --now hubd`.
set -e

case "$1" in
configure | abort-upgrade | abort-remove | abort-deconfigure | "")
	if ! getent group hubd >/dev/null; then
		groupadd --system hubd
	fi
	if ! getent passwd hubd >/dev/null; then
		useradd --system --gid hubd --home-dir /var/lib/hubd --no-create-home \
			--shell /usr/sbin/nologin --comment "hub notification node" hubd
	fi
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload
		# An upgrade restarts a running node on the new binary.
		if [ -n "$2" ]; then
			systemctl try-restart hubd.service || true
		fi
	fi
	if [ -z "$2" ]; then
		echo "hubd: edit /etc/default/hubd, then: systemctl enable --now hubd"
	fi
	;;
esac
exit 0
