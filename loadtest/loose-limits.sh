# loadtest/loose-limits.sh, sourced by bench.sh, hubload.sh and cluster.sh:
# hubd's rate limits raised far above what the scripts send. The defaults
# are sized for production (docs/operations.md, "Rate limits"); these
# scripts drive ~100,000 publishes/s through a handful of tokens from
# 127.0.0.1, and register thousands of users and tickets from loopback.
# Raised, not turned off (0), so that the limits' cost stays in the
# figures. Variables, not flags: a hubd built from an older REV, which has
# no such flags, ignores them. A variable already set wins.
for v in REGISTER AUTH_FAILURE TICKET MAILBOX PUBLISH_TOKEN PUBLISH_ADDRESS; do
	r=HUB_${v}_RATE b=HUB_${v}_BURST
	export "$r=${!r:-1e9}" "$b=${!b:-1000000000}"
done
unset v r b
