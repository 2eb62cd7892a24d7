package portal

import (
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// chainPriority is after the nat hooks' destination NAT (-100, where
// kube-proxy's iptables, legacy or nft, and nftables modes DNAT a Service
// address to an endpoint) and before the filter hooks (0).
const chainPriority nftables.ChainPriority = -90

func (c Capture) table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
}

// replaceTable queues the table with its chains and rules, replacing any
// table of that name: one transaction once flushed. Adding the table
// before deleting it makes the deletion succeed when there is none.
func (c Capture) replaceTable(conn *nftables.Conn) {
	c.deleteTable(conn)
	t := conn.AddTable(c.table())
	pre := conn.AddChain(&nftables.Chain{
		Name: "prerouting", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(chainPriority),
	})
	iifs := c.InputInterfaces
	if len(iifs) == 0 {
		iifs = []string{""}
	}
	for _, iif := range iifs {
		conn.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: c.tproxyRule(iif)})
	}
	if len(c.InputInterfaces) > 0 {
		// A host sharing the namespace must reach its own pods.
		return
	}
	out := conn.AddChain(&nftables.Chain{
		Name: "output", Table: t, Type: nftables.ChainTypeRoute,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRef(chainPriority),
	})
	conn.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: append(c.matchTCPToRange(), c.setMark()...)})
}

// deleteTable queues the deletion of the table, none being no error.
func (c Capture) deleteTable(conn *nftables.Conn) {
	conn.AddTable(c.table())
	conn.DelTable(c.table())
}

// tproxyRule is `[iifname iif] ip daddr CIDR meta l4proto tcp tproxy to
// 127.0.0.1:port meta mark set mark`. The kernel's tproxy assigns the
// packet to the socket of its own 4-tuple if there is one (an accepted
// connection), else to the listener at the address; when neither is a
// transparent socket it ends the rule (NFT_BREAK), so only packets with a
// socket are marked and delivered locally.
func (c Capture) tproxyRule(iif string) []expr.Any {
	var exprs []expr.Any
	if iif != "" {
		name := make([]byte, unix.IFNAMSIZ)
		copy(name, iif)
		exprs = append(exprs,
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name})
	}
	listen := c.ListenAddress()
	addr := listen.Addr().As4()
	exprs = append(exprs, c.matchTCPToRange()...)
	exprs = append(exprs,
		&expr.Immediate{Register: 1, Data: addr[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(listen.Port())},
		&expr.TProxy{Family: unix.NFPROTO_IPV4, TableFamily: unix.NFPROTO_IPV4, RegAddr: 1, RegPort: 2})
	return append(exprs, c.setMark()...)
}

// matchTCPToRange is `ip daddr CIDR meta l4proto tcp`.
func (c Capture) matchTCPToRange() []expr.Any {
	network := c.CIDR.Masked().Addr().As4()
	mask := uint32(0xffffffff) << (32 - c.CIDR.Bits())
	if c.CIDR.Bits() == 0 {
		mask = 0
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.BigEndian.PutUint32(mask), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: network[:]},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
}

// setMark is `meta mark set meta mark & ~mask | mark`: the bits of the
// mark outside the mask (kube-proxy's, a CNI's) are kept.
func (c Capture) setMark() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^c.mask()), Xor: binaryutil.NativeEndian.PutUint32(c.Mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
}
