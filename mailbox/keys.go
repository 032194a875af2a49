package mailbox

import "encoding/binary"

// Table tags: the first byte of every key. See the package doc for the layout.
const (
	tagApplied  = 'a'
	tagUser     = 'u'
	tagToken    = 't'
	tagMailbox  = 'b'
	tagUserMbox = 'B'
	tagStream   = 's'
	tagStatus   = 'm'
	tagExpiry   = 'x'
	tagTopic    = 'p'
	tagIdem     = 'k'
	tagDevice   = 'd'
	tagTicket   = 'T'
	tagGarbage  = 'g'

	tagReceiptSeq = 'R'
	tagReceipt    = 'r'
	tagOutbox     = 'o'

	tagDrainUser    = 'V'
	tagDrainMailbox = 'v'

	tagSeal     = 'S'
	tagRestored = 'G'
)

// key joins a tag and parts with '/'. Parts are strings or []byte.
func key(tag byte, parts ...[]byte) []byte {
	n := 1
	for _, p := range parts {
		n += 1 + len(p)
	}
	k := make([]byte, 1, n)
	k[0] = tag
	for _, p := range parts {
		k = append(k, '/')
		k = append(k, p...)
	}
	return k
}

func be64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func appliedKey() []byte                    { return []byte{tagApplied} }
func sealKey() []byte                       { return []byte{tagSeal} }
func restoredKey() []byte                   { return []byte{tagRestored} }
func userKey(user string) []byte            { return key(tagUser, []byte(user)) }
func tokenKey(hash []byte) []byte           { return key(tagToken, hash) }
func mailboxKey(mb string) []byte           { return key(tagMailbox, []byte(mb)) }
func userMailboxKey(user, mb string) []byte { return key(tagUserMbox, []byte(user), []byte(mb)) }
func userMailboxPrefix(user string) []byte  { return key(tagUserMbox, []byte(user), nil) }
func streamKey(user string, seq Seq) []byte {
	return key(tagStream, []byte(user), be64(uint64(seq)))
}
func streamPrefix(user string) []byte { return key(tagStream, []byte(user), nil) }
func statusKey(id string) []byte      { return key(tagStatus, []byte(id)) }
func expiryKey(at int64, user string, seq Seq) []byte {
	return key(tagExpiry, be64(uint64(at)), []byte(user), be64(uint64(seq)))
}
func expiryPrefix() []byte                       { return []byte{tagExpiry, '/'} }
func topicKey(mb, topic string) []byte           { return key(tagTopic, []byte(mb), []byte(topic)) }
func idemKey(mb, k string) []byte                { return key(tagIdem, []byte(mb), []byte(k)) }
func deviceKey(user, dev string) []byte          { return key(tagDevice, []byte(user), []byte(dev)) }
func devicePrefix(user string) []byte            { return key(tagDevice, []byte(user), nil) }
func ticketKey(hash []byte) []byte               { return key(tagTicket, hash) }
func garbageKey(deadline int64, k []byte) []byte { return key(tagGarbage, be64(uint64(deadline)), k) }
func garbagePrefix() []byte                      { return []byte{tagGarbage, '/'} }

// parseExpiryKey splits an expiry index key into its parts.
func parseExpiryKey(k []byte) (at int64, user string, seq Seq, ok bool) {
	// x / at(8) / user / seq(8)
	if len(k) < 1+1+8+1+1+1+8 || k[0] != tagExpiry {
		return 0, "", 0, false
	}
	at = int64(binary.BigEndian.Uint64(k[2:10]))
	user = string(k[11 : len(k)-9])
	seq = Seq(binary.BigEndian.Uint64(k[len(k)-8:]))
	return at, user, seq, true
}

// parseGarbageKey splits a garbage index key into its deadline and the key to delete.
func parseGarbageKey(k []byte) (deadline int64, target []byte, ok bool) {
	if len(k) < 1+1+8+1+1 || k[0] != tagGarbage {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(k[2:10])), k[11:], true
}
