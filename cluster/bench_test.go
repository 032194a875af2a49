package cluster_test

import (
	"testing"

	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/mailbox"
)

// BenchmarkPublishParallel measures group commit: many publishers, one item
// each per call, on a single node with real fsyncs.
func BenchmarkPublishParallel(b *testing.B) {
	_, n := clustertest.Start(b)
	user, _ := clustertest.NewUser(b, n)
	_, token := clustertest.NewMailbox(b, n, user)
	before := n.Stats().LastIndex
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := n.Publish(b.Context(), []mailbox.PublishItem{clustertest.Item(token, "hello, this is a notification")})
			if err != nil || res[0].Err != nil {
				b.Errorf("publish: %v %v", err, res[0].Err)
				return
			}
		}
	})
	b.StopTimer()
	if entries := n.Stats().LastIndex - before; entries > 0 {
		b.ReportMetric(float64(b.N)/float64(entries), "items/entry")
	}
}
