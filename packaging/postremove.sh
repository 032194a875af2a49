#!/bin/sh
# hubd postrm: on purge, remove the hubd user, unless its data is still in
# /var/lib/hubd: the state is never deleted by the package (remove it by
# hand once you are sure, then `userdel hubd`).
set -e

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
case "$1" in
purge)
	if [ -e /var/lib/hubd ] || [ -e /var/lib/private/hubd ]; then
		echo "hubd: /var/lib/hubd is kept (the node's data), and so is the hubd user"
	else
		if getent passwd hubd >/dev/null; then
			userdel hubd || true
		fi
		if getent group hubd >/dev/null; then
			groupdel hubd || true
		fi
	fi
	;;
esac
exit 0
