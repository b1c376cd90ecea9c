package integration_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kafkaTopic is the topic each in-process cluster starts with.
const kafkaTopic = "keepalive"

// kafkaCluster starts franz-go's in-process Kafka cluster, one broker
// listening through the library's ListenConfig with serverConfig, and
// returns its address and the listener that records what it accepts. The
// cluster is closed at cleanup.
func kafkaCluster(t *testing.T) (string, *acceptRecorder) {
	t.Helper()
	var ln *acceptRecorder
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, kafkaTopic),
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			ln = listen(t)
			return ln, nil
		}))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	addrs := c.ListenAddrs()
	require.Len(t, addrs, 1)
	return addrs[0], ln
}

// kafkaClient returns a franz-go client that dials through rec and
// consumes kafkaTopic from the start; it is closed at cleanup.
func kafkaClient(t *testing.T, addr string, rec *recorder) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.Dialer(rec.DialContext),
		kgo.DefaultProduceTopic(kafkaTopic), kgo.ConsumeTopics(kafkaTopic))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return cl
}

// pollOne polls cl until it returns a record or an error, or ctx ends.
func pollOne(ctx context.Context, cl *kgo.Client) (*kgo.Record, error) {
	for {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return nil, err
		}
		if recs := fs.Records(); len(recs) > 0 {
			return recs[0], nil
		}
	}
}

func TestKafka(t *testing.T) {
	t.Parallel()
	addr, ln := kafkaCluster(t)
	rec := newRecorder(clientConfig)
	cl := kafkaClient(t, addr, rec)
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Value: []byte(t.Name())}).FirstErr())
	r, err := pollOne(ctx, cl)
	require.NoError(t, err)
	assert.Equal(t, t.Name(), string(r.Value))

	// franz-go dials the seed broker, then the broker again for each kind
	// of request (produce, fetch, metadata); every dial went through the
	// hook, and the broker accepted no other connection.
	dials := rec.Dials(t)
	require.NotEmpty(t, dials)
	t.Logf("%d dials", len(dials))
	for i, d := range dials {
		assert.Equal(t, want(clientConfig), d.AtDial, "dial %d, when the dialer returned", i)
		assertSocket(t, d.Conn, clientConfig)
		assertSocket(t, ln.from(t, d.Conn), serverConfig)
	}
	ln.mu.Lock()
	accepted := len(ln.conns)
	ln.mu.Unlock()
	assert.Equal(t, len(dials), accepted, "connections the broker accepted")
}

// deadPeerKafka leaves a consumer polling and cuts every flow of its
// client. franz-go retries on its own: the application's PollFetches
// returns no error, the client dials the broker again after its retry
// backoff (250 ms at first), and a record produced afterwards is consumed.
func deadPeerKafka(t *testing.T) {
	addr, _ := kafkaCluster(t)
	rec := newRecorder(deadPeerConfig)
	cl := kafkaClient(t, addr, rec)
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	// A first record, consumed, so that the consumer has a fetch session
	// and is waiting on the broker for the next.
	require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Value: []byte("before")}).FirstErr())
	_, err := pollOne(ctx, cl)
	require.NoError(t, err)
	var got *kgo.Record
	// No deadline: the subtest may wait long for a parallel slot.
	pollCtx, stopPoll := context.WithCancel(context.Background())
	t.Cleanup(stopPoll)
	done := goCall(func() error {
		var err error
		got, err = pollOne(pollCtx, cl)
		return err
	})
	dials := rec.Dials(t)
	var last time.Time
	for _, d := range dials {
		if l := cutFlow(t, d.Conn); l.After(last) {
			last = l
		}
	}
	t.Parallel()

	redial := rec.redialAfter(t, len(dials))
	// A producer of its own, so that the record does not wait on the
	// consumer's client.
	producer, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(kafkaTopic))
	require.NoError(t, err)
	t.Cleanup(producer.Close)
	ctx, cancel = context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	require.NoError(t, producer.ProduceSync(ctx, &kgo.Record{Value: []byte("after")}).FirstErr())
	o := await(t, done)
	require.NoError(t, o.err, "PollFetches")
	assert.Equal(t, "after", string(got.Value))
	noticed(t, "franz-go", fmt.Sprintf("no error: dialed again (%d flows cut) and consumed the record produced after", len(dials)), last, redial.At)
}
