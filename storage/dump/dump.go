// Package dump moves a Custody database between backends through a file:
// Write exports a storage.Portable backend, Import loads the file into
// another, and both check what moved by counts and a checksum.
//
// The file is JSON Lines: a header line, one line per storage.Record, and
// a summary line that counts the records of each kind and gives the
// SHA-256 of the record lines. The checksum is of the records' canonical
// form (storage.Record.Canonical), so one content has one checksum
// whichever backend holds it: Import computes it again from the records it
// reads, refuses a file whose records do not match its summary (and
// writes none of them), and after the import exports the target and
// checks that it holds the same records.
package dump

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"maps"
	"slices"
	"strings"

	"github.com/custodymdm/custody/storage"
)

// Format and Version are the header's.
const (
	Format  = "custody-export"
	Version = 1
)

type header struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
}

// A Summary counts a database's or a file's records and gives their
// checksum.
type Summary struct {
	Records int            `json:"records"`
	Counts  map[string]int `json:"counts"` // by kind
	SHA256  string         `json:"sha256"` // of the canonical record lines
}

// Equal reports whether two summaries describe the same records.
func (s *Summary) Equal(o *Summary) bool {
	return s.Records == o.Records && s.SHA256 == o.SHA256 && maps.Equal(s.Counts, o.Counts)
}

// String is the summary as a report, one line per kind.
func (s *Summary) String() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(s.Counts)) {
		fmt.Fprintf(&b, "%-22s %9d\n", k, s.Counts[k])
	}
	fmt.Fprintf(&b, "%-22s %9d\nsha256 %s\n", "records", s.Records, s.SHA256)
	return b.String()
}

// A summer puts records in canonical form, checks their order, and counts
// and hashes them.
type summer struct {
	sum  Summary
	h    hash.Hash
	last int // the index of the last record's kind
	line []byte
}

func newSummer() *summer {
	return &summer{sum: Summary{Counts: map[string]int{}}, h: sha256.New()}
}

// add canonicalises r and returns its line (valid until the next add).
func (s *summer) add(r *storage.Record) ([]byte, error) {
	if err := r.Canonical(); err != nil {
		return nil, err
	}
	i := storage.KindIndex(r.Kind)
	if i < s.last {
		return nil, fmt.Errorf("%s record %q after the %s records: records must come in the order of storage.Kinds", r.Kind, r.Key, storage.Kinds()[s.last])
	}
	s.last = i
	line, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	s.line = append(append(s.line[:0], line...), '\n')
	s.h.Write(s.line)
	s.sum.Records++
	s.sum.Counts[r.Kind]++
	return s.line, nil
}

func (s *summer) summary() *Summary {
	out := s.sum
	out.Counts = maps.Clone(s.sum.Counts)
	out.SHA256 = hex.EncodeToString(s.h.Sum(nil))
	return &out
}

// Sum exports src and returns the summary of what it holds, without
// writing it anywhere.
func Sum(ctx context.Context, src storage.Portable) (*Summary, error) {
	s := newSummer()
	err := src.Export(ctx, func(r *storage.Record) error {
		_, err := s.add(r)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.summary(), nil
}

// Write exports src to w and returns the summary it wrote at the end.
// progress, when not nil, is called with the number of records written so
// far after each.
func Write(ctx context.Context, w io.Writer, src storage.Portable, progress func(int)) (*Summary, error) {
	bw := bufio.NewWriterSize(w, 1<<16)
	if err := writeJSONLine(bw, header{Format: Format, Version: Version}); err != nil {
		return nil, err
	}
	s := newSummer()
	err := src.Export(ctx, func(r *storage.Record) error {
		line, err := s.add(r)
		if err != nil {
			return err
		}
		if _, err := bw.Write(line); err != nil {
			return err
		}
		if progress != nil {
			progress(s.sum.Records)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sum := s.summary()
	if err := writeJSONLine(bw, struct {
		Summary *Summary `json:"summary"`
	}{sum}); err != nil {
		return nil, err
	}
	return sum, bw.Flush()
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// A line of the file after the header: a record, or the summary.
type line struct {
	storage.Record
	Summary *Summary `json:"summary"`
}

// ErrMismatch is returned when records do not match the summary said to
// describe them.
var ErrMismatch = errors.New("dump: the records do not match the summary")

// Import reads a file Write wrote and imports its records into dst, which
// must be empty. The records are checked against the file's summary as
// they are read, and dst's import fails (writing nothing) unless they all
// match it; once imported, dst is exported again and its summary compared
// with the file's. progress, when not nil, is called with the number of
// records read so far after each.
func Import(ctx context.Context, r io.Reader, dst storage.Portable, progress func(int)) (*Summary, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<16))
	var h header
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("dump: header: %w", err)
	}
	if h.Format != Format {
		return nil, fmt.Errorf("dump: not a custody export (format %q)", h.Format)
	}
	if h.Version != Version {
		return nil, fmt.Errorf("dump: export version %d; this custody reads version %d", h.Version, Version)
	}
	var want *Summary
	s := newSummer()
	records := func(yield func(*storage.Record, error) bool) {
		for n := 1; ; n++ {
			var l line
			err := dec.Decode(&l)
			if err == io.EOF {
				yield(nil, errors.New("dump: the file ends without its summary line: it was cut short"))
				return
			}
			if err != nil {
				yield(nil, fmt.Errorf("dump: line %d: %w", n+1, err))
				return
			}
			if l.Summary != nil {
				want = l.Summary
				break
			}
			rec := l.Record
			if _, err := s.add(&rec); err != nil {
				yield(nil, fmt.Errorf("dump: line %d: %w", n+1, err))
				return
			}
			if !yield(&rec, nil) {
				return
			}
			if progress != nil {
				progress(s.sum.Records)
			}
		}
		if _, err := dec.Token(); err != io.EOF {
			yield(nil, errors.New("dump: lines after the summary line"))
			return
		}
		if got := s.summary(); !got.Equal(want) {
			yield(nil, fmt.Errorf("%w: read %d records, sha256 %s; the summary says %d, sha256 %s", ErrMismatch, got.Records, got.SHA256, want.Records, want.SHA256))
		}
	}
	if err := dst.Import(ctx, iter.Seq2[*storage.Record, error](records)); err != nil {
		return nil, err
	}
	if want == nil {
		return nil, errors.New("dump: the import stopped before the end of the file")
	}
	got, err := Sum(ctx, dst)
	if err != nil {
		return nil, fmt.Errorf("dump: imported; exporting again to verify: %w", err)
	}
	if !got.Equal(want) {
		return got, fmt.Errorf("%w: imported, but the database now holds %d records, sha256 %s; the file, %d, sha256 %s", ErrMismatch, got.Records, got.SHA256, want.Records, want.SHA256)
	}
	return got, nil
}
