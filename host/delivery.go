package host

import (
	"math"
	"math/bits"
	"sync"

	"github.com/weirhq/weir/plugins"
	"github.com/weirhq/weir/record"
	"github.com/weirhq/weir/sources"
)

// delivery is one Deliver call's records in a lane: the source's slice
// (which the host owns) and the lane items pointing into it. Both go back
// to pools once every batch that took one of its records has ended, so a
// steady stream of records reuses memory instead of allocating and zeroing
// about 200 bytes a record.
type delivery struct {
	recs  []record.Record
	items []item
	// wire, with a pipeline whose dispatcher takes encoded records, holds
	// recs in the handler protocol's wire form (see encode); nil
	// otherwise.
	wire []byte
	// arrived is when the records were delivered (Unix nanoseconds).
	arrived int64
	// left counts its records not yet in a batch that ended. Only the
	// lane's goroutine touches it (takeIncoming hands the items over
	// under the lane's mutex).
	left int
}

// maxPooledItems is the largest size class of pooled item slabs (1<<17).
const maxPooledItemClass = 17

var (
	itemSlabs  [maxPooledItemClass + 1]sync.Pool // class c: *[]item of capacity 1<<c
	deliveries = sync.Pool{New: func() any { return new(delivery) }}
)

// newDelivery wraps recs with items from the pool.
func newDelivery(recs []record.Record) *delivery {
	d := deliveries.Get().(*delivery)
	d.recs, d.left = recs, len(recs)
	n := len(recs)
	c := 0
	if n > 1 {
		c = bits.Len(uint(n - 1))
	}
	if c <= maxPooledItemClass {
		if p, ok := itemSlabs[c].Get().(*[]item); ok {
			d.items = (*p)[:n]
			return d
		}
		d.items = make([]item, n, 1<<c)
		return d
	}
	d.items = make([]item, n)
	return d
}

// ended notes that n of d's records were in a batch that has ended; when
// none is left, d's memory goes back to the pools. The caller must not use
// d, its items or its records afterwards.
func (d *delivery) ended(n int) {
	if d.left -= n; d.left > 0 {
		return
	}
	sources.PutRecords(d.recs)
	putWire(d.wire)
	// Not cleared: lane.deliver overwrites each item it takes.
	items := d.items[:cap(d.items)]
	if c := bits.Len(uint(cap(items) - 1)); cap(items) > 0 && cap(items) == 1<<c && c <= maxPooledItemClass {
		items = items[:0]
		itemSlabs[c].Put(&items)
	}
	*d = delivery{}
	deliveries.Put(d)
}

// endDeliveries notes that the records of items, abandoned, are done with;
// each delivery's run of them is counted at once.
func endDeliveries(items []*item) {
	var d *delivery
	n := 0
	for _, it := range items {
		if it.d != d {
			if d != nil {
				d.ended(n)
			}
			d, n = it.d, 0
		}
		n++
	}
	if d != nil {
		d.ended(n)
	}
}

// encode writes d's records, size bytes in all (plugins.RecordWireSize),
// into d.wire in the handler protocol's wire form, notes in each item where
// its record is, and points the records' keys, values and header values at
// their copies there. A batch then sends its records by copying runs of
// these bytes (batchRun.encoded), instead of copying each record into a
// slice of its own and encoding it. This is the only copy of the records'
// bytes the host makes: the Kafka source lends them from its fetch for the
// delivery (see pipeline.CopiesBytes), and a source's own buffer of them,
// if it made one (sources.GetBytes), goes back at once. So memory stays as
// it was, with the delivery's lifetime.
func (d *delivery) encode(size int) {
	if size > math.MaxUint32 {
		// Never, with the sources' delivery sizes; sent as records.
		d.own()
		return
	}
	buf := getWire(size)
	for i := range d.recs {
		it := &d.items[i]
		it.wireAt = uint32(len(buf))
		buf = plugins.AppendSizedRecord(buf, &d.recs[i], int(it.wireLen)) // which lane.deliver took
	}
	d.wire = buf
	sources.ReleaseBytes(d.recs)
}

// own copies the keys, values and header values of d's records into a
// buffer of d's own, for a delivery encode does not encode: the source may
// have lent them only for the delivery (see pipeline.CopiesBytes).
func (d *delivery) own() {
	n := 0
	for i := range d.recs {
		n += d.recs[i].Size()
	}
	buf := make([]byte, 0, n)
	take := func(v []byte) []byte {
		if v == nil {
			return nil
		}
		buf = append(buf, v...)
		return buf[len(buf)-len(v) : len(buf) : len(buf)]
	}
	for i := range d.recs {
		r := &d.recs[i]
		r.Key, r.Value = take(r.Key), take(r.Value)
		for j := range r.Headers {
			r.Headers[j].Value = take(r.Headers[j].Value)
		}
	}
}

// maxWireClass is the largest size class of pooled wire buffers (16 MiB).
const maxWireClass = 24

var wireBufs [maxWireClass + 1]sync.Pool // class c: *[]byte of capacity 1<<c

// getWire returns an empty buffer with room for n bytes.
func getWire(n int) []byte {
	c := 0
	if n > 1 {
		c = bits.Len(uint(n - 1))
	}
	if c > maxWireClass {
		return make([]byte, 0, n)
	}
	if p, ok := wireBufs[c].Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, 1<<c)
}

// putWire gives buf, from getWire, back.
func putWire(buf []byte) {
	if cap(buf) == 0 {
		return
	}
	if c := bits.Len(uint(cap(buf) - 1)); cap(buf) == 1<<c && c <= maxWireClass {
		buf = buf[:0]
		wireBufs[c].Put(&buf)
	}
}
