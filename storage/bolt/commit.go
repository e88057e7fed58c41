package bolt

import (
	"errors"
	"sync"

	bbolt "go.etcd.io/bbolt"
)

// ErrClosed is returned by writes to a closed DB.
var ErrClosed = errors.New("bolt: database closed")

// committer runs write functions in shared transactions (group commit). One
// goroutine takes whatever writes are queued, runs them in one transaction
// and commits; writes that arrive during that commit queue up and share the
// next one. A lone writer waits for nothing but its own fsync, and
// concurrent writers share fsyncs. (bbolt's Batch instead waits
// MaxBatchDelay for company, which adds that delay to every write when the
// server is not busy.)
//
// As with bbolt's Batch, a function may run more than once: if one function
// in a group fails, the transaction is rolled back and each function of the
// group runs again in a transaction of its own, so one failure cannot undo
// another's write.
type committer struct {
	db    *bbolt.DB
	calls chan *call
	stop  chan struct{}
	done  chan struct{}

	// mu orders sends on calls before close: a send starts only while
	// closed is false, and close waits for sends under way to finish.
	mu     sync.RWMutex
	closed bool
}

type call struct {
	fn   func(*bbolt.Tx) error
	err  error
	done chan struct{}
}

// maxGroup bounds the writes in one transaction.
const maxGroup = 256

func newCommitter(db *bbolt.DB) *committer {
	c := &committer{db: db, calls: make(chan *call, maxGroup), stop: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c
}

// update runs fn in a write transaction shared with concurrent callers.
func (c *committer) update(fn func(*bbolt.Tx) error) error {
	cl := &call{fn: fn, done: make(chan struct{})}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return ErrClosed
	}
	c.calls <- cl // the loop drains calls until close, so this completes
	c.mu.RUnlock()
	<-cl.done
	return cl.err
}

func (c *committer) loop() {
	defer close(c.done)
	for {
		var first *call
		select {
		case first = <-c.calls:
		case <-c.stop:
			// Writes already queued still run: their callers are waiting.
			for {
				select {
				case cl := <-c.calls:
					c.commit([]*call{cl})
				default:
					return
				}
			}
		}
		group := []*call{first}
	gather:
		for len(group) < maxGroup {
			select {
			case cl := <-c.calls:
				group = append(group, cl)
			default:
				break gather
			}
		}
		c.commit(group)
	}
}

// close stops the committer after the queued writes have run.
func (c *committer) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	close(c.stop)
	<-c.done
}

var errGroupFailed = errors.New("bolt: a write in the group failed")

func (c *committer) commit(group []*call) {
	err := c.db.Update(func(tx *bbolt.Tx) error {
		for _, cl := range group {
			if cl.err = cl.fn(tx); cl.err != nil {
				return errGroupFailed
			}
		}
		return nil
	})
	switch {
	case err == nil:
	case errors.Is(err, errGroupFailed) && len(group) == 1:
		// The function's own error is already in cl.err.
	case errors.Is(err, errGroupFailed):
		for _, cl := range group {
			cl.err = c.db.Update(cl.fn)
		}
	default:
		for _, cl := range group {
			cl.err = err
		}
	}
	for _, cl := range group {
		close(cl.done)
	}
}
