package locallog

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stratabroker/strata/kafkaproto"
)

// crashFixture is a log abandoned without Close: 30 batches flushed (below
// the recovery point), then 12 more that were never flushed.
type crashFixture struct {
	dir     string
	batches [][2]int64 // first, last offset of every batch
	leo     int64
	segs    []SegmentInfo
	indexes map[string][]byte // index file contents by path
	// lastPos, lastSize: the last batch's position and size in the last segment.
	lastPos, lastSize int64
	epochs            map[int32][2]int64
}

func newCrashFixture(t *testing.T, clean bool) *crashFixture {
	t.Helper()
	f := &crashFixture{dir: t.TempDir(), indexes: map[string][]byte{}, epochs: map[int32][2]int64{}}
	l, _ := openTest(t, f.dir, smallConfig())
	for i := range 42 {
		res := appendN(t, l, 3, int64(1000+i), int32(i/10))
		f.batches = append(f.batches, [2]int64{res.FirstOffset, res.LastOffset})
		if i == 29 {
			if err := l.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.leo = l.LogEndOffset()
	f.segs = l.Segments()
	for _, s := range f.segs {
		f.indexes[s.IndexPath] = readFile(t, s.IndexPath)
		f.indexes[s.TimeIndexPath] = readFile(t, s.TimeIndexPath)
	}
	for _, e := range []int32{-1, 0, 1, 2, 3, 4, 9} {
		ep, off := l.EndOffsetForEpoch(e)
		f.epochs[e] = [2]int64{int64(ep), off}
	}
	last := f.segs[len(f.segs)-1]
	b, err := l.Read(f.batches[len(f.batches)-1][0], 1<<20, -1, true)
	if err != nil {
		t.Fatal(err)
	}
	f.lastSize = int64(len(b))
	f.lastPos = last.Size - f.lastSize
	// Segment 66..98 reaches past the recovery point (90), 99.. is the last.
	if len(f.segs) != 4 || f.segs[2].BaseOffset != 66 || last.BaseOffset != 99 {
		t.Fatalf("fixture layout changed: %+v", f.segs)
	}
	if clean {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	} else {
		l.abandon()
	}
	return f
}

func (f *crashFixture) lastLog() string { return f.segs[len(f.segs)-1].LogPath }

func (f *crashFixture) lastFirst() int64 { return f.batches[len(f.batches)-1][0] }

func mutateFile(t *testing.T, path string, fn func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, fn(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRecovery(t *testing.T) {
	type scenario struct {
		name    string
		clean   bool
		damage  func(t *testing.T, f *crashFixture)
		wantEnd func(f *crashFixture) int64
		wantLog string // substring the recovery log must contain
	}
	truncateAt := func(k int64) func(t *testing.T, f *crashFixture) {
		return func(t *testing.T, f *crashFixture) {
			if err := os.Truncate(f.lastLog(), f.lastPos+k); err != nil {
				t.Fatal(err)
			}
		}
	}
	flip := func(k int64) func(t *testing.T, f *crashFixture) {
		return func(t *testing.T, f *crashFixture) {
			mutateFile(t, f.lastLog(), func(b []byte) []byte { b[f.lastPos+k] ^= 0x10; return b })
		}
	}
	garbage := func(t *testing.T, f *crashFixture) {
		mutateFile(t, f.lastLog(), func(b []byte) []byte { return append(b, bytes.Repeat([]byte{0xa5}, 37)...) })
	}
	dropLast := func(f *crashFixture) int64 { return f.lastFirst() }
	keepAll := func(f *crashFixture) int64 { return f.leo }
	var scenarios []scenario
	for _, k := range []int64{1, 11, 12, 60, 61, 70, -1} {
		scenarios = append(scenarios, scenario{
			name: "torn last batch", damage: func(t *testing.T, f *crashFixture) {
				n := k
				if n < 0 {
					n = f.lastSize - 1
				}
				truncateAt(n)(t, f)
			}, wantEnd: dropLast, wantLog: "dropped_bytes",
		})
	}
	scenarios = append(scenarios,
		scenario{name: "garbage tail", damage: garbage, wantEnd: keepAll, wantLog: "dropped_bytes=37"},
		scenario{name: "garbage tail after clean shutdown", clean: true, damage: garbage, wantEnd: keepAll, wantLog: "dropped_bytes=37"},
		scenario{name: "crc field", damage: flip(18), wantEnd: dropLast, wantLog: "crc"},
		scenario{name: "attributes", damage: flip(21), wantEnd: dropLast, wantLog: "crc"},
		scenario{name: "record bytes", damage: flip(63), wantEnd: dropLast, wantLog: "crc"},
		scenario{name: "record bytes after clean shutdown", clean: true, damage: flip(63), wantEnd: dropLast, wantLog: "crc"},
		scenario{name: "batch length", damage: flip(10), wantEnd: dropLast, wantLog: "dropped_bytes"},
		scenario{name: "magic", damage: flip(16), wantEnd: dropLast, wantLog: "magic"},
		scenario{
			name: "corrupt batch in an unflushed middle segment",
			damage: func(t *testing.T, f *crashFixture) {
				s := f.segmentHolding(t, 70)
				mutateFile(t, s.LogPath, func(b []byte) []byte { b[len(b)-5] ^= 1; return b })
			},
			wantEnd: func(f *crashFixture) int64 {
				// The last batch of that segment goes, and every later segment.
				s := f.segmentHolding(nil, 70)
				for i := len(f.batches) - 1; i >= 0; i-- {
					if f.batches[i][1] == s.NextOffset-1 {
						return f.batches[i][0]
					}
				}
				return -1
			},
			wantLog: "dropping segments",
		},
		scenario{
			name: "deleted indexes",
			damage: func(t *testing.T, f *crashFixture) {
				for p := range f.indexes {
					if err := os.Remove(p); err != nil {
						t.Fatal(err)
					}
				}
			},
			wantEnd: keepAll, wantLog: "rebuilding indexes",
		},
		scenario{
			name: "garbage indexes",
			damage: func(t *testing.T, f *crashFixture) {
				for p, b := range f.indexes {
					g := bytes.Repeat([]byte{0x7f}, len(b)+4)
					if err := os.WriteFile(p, g, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			},
			wantEnd: keepAll, wantLog: "index damaged",
		},
		scenario{
			name: "index points at the wrong batch",
			damage: func(t *testing.T, f *crashFixture) {
				s := f.segs[0]
				mutateFile(t, s.IndexPath, func(b []byte) []byte {
					binary.BigEndian.PutUint32(b[len(b)-8:], binary.BigEndian.Uint32(b[len(b)-8:])+1)
					return b
				})
			},
			wantEnd: keepAll, wantLog: "rebuilding indexes",
		},
		scenario{
			name: "half an index entry after clean shutdown", clean: true,
			damage: func(t *testing.T, f *crashFixture) {
				s := f.segs[len(f.segs)-1]
				mutateFile(t, s.IndexPath, func(b []byte) []byte { return append(b, 1, 2, 3) })
			},
			wantEnd: keepAll, wantLog: "index damaged",
		},
		scenario{
			name: "corrupt checkpoints",
			damage: func(t *testing.T, f *crashFixture) {
				for _, n := range []string{recoveryPointFile, leaderEpochFile, logStartFile} {
					mutateFile(t, filepath.Join(f.dir, n), func(b []byte) []byte { b[len(b)-1] ^= 1; return b })
				}
			},
			wantEnd: keepAll, wantLog: "unreadable",
		},
		scenario{
			name: "deleted checkpoints",
			damage: func(t *testing.T, f *crashFixture) {
				for _, n := range []string{recoveryPointFile, leaderEpochFile, logStartFile} {
					if err := os.Remove(filepath.Join(f.dir, n)); err != nil {
						t.Fatal(err)
					}
				}
			},
			wantEnd: keepAll,
		},
		scenario{
			name: "deleted checkpoints after clean shutdown", clean: true,
			damage: func(t *testing.T, f *crashFixture) {
				for _, n := range []string{recoveryPointFile, leaderEpochFile} {
					if err := os.Remove(filepath.Join(f.dir, n)); err != nil {
						t.Fatal(err)
					}
				}
			},
			wantEnd: keepAll,
		},
		scenario{name: "no damage", damage: func(*testing.T, *crashFixture) {}, wantEnd: keepAll},
		scenario{name: "no damage clean", clean: true, damage: func(*testing.T, *crashFixture) {}, wantEnd: keepAll},
	)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			f := newCrashFixture(t, sc.clean)
			sc.damage(t, f)
			want := sc.wantEnd(f)
			l, lb := openTest(t, f.dir, smallConfig())
			if got := l.LogEndOffset(); got != want {
				t.Fatalf("log end %d, want %d; log:\n%s", got, want, lb.String())
			}
			if sc.wantLog != "" && !contains(lb.String(), sc.wantLog) {
				t.Errorf("recovery log lacks %q:\n%s", sc.wantLog, lb.String())
			}
			if l.LogStartOffset() != 0 {
				t.Errorf("log start %d", l.LogStartOffset())
			}
			checkContents(t, l)
			// Indexes of segments that kept all their data are rebuilt byte for byte.
			for _, s := range l.Segments() {
				for _, orig := range f.segs {
					if orig.BaseOffset == s.BaseOffset && orig.NextOffset == s.NextOffset && !(s.Active && !orig.Active) {
						if !bytes.Equal(readFile(t, s.IndexPath), f.indexes[orig.IndexPath]) {
							t.Errorf("segment %d: offset index differs after recovery", s.BaseOffset)
						}
						if !bytes.Equal(readFile(t, s.TimeIndexPath), f.indexes[orig.TimeIndexPath]) {
							t.Errorf("segment %d: time index differs after recovery", s.BaseOffset)
						}
					}
				}
			}
			if want == f.leo {
				for e, w := range f.epochs {
					if ep, off := l.EndOffsetForEpoch(e); int64(ep) != w[0] || off != w[1] {
						t.Errorf("EndOffsetForEpoch(%d) = %d, %d; before the crash %d, %d", e, ep, off, w[0], w[1])
					}
				}
			}
			if ts, off, err := l.MaxTimestamp(); err != nil || off != want-1 || ts != 1000+want/3-1+2 {
				t.Errorf("MaxTimestamp = %d at %d, %v", ts, off, err)
			}
			// The log keeps going with dense offsets, and survives a clean restart.
			for range 5 {
				appendN(t, l, 2, 5000, 9)
			}
			checkContents(t, l)
			end := l.LogEndOffset()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l2, lb2 := openTest(t, f.dir, smallConfig())
			if l2.LogEndOffset() != end {
				t.Fatalf("after clean restart: end %d, want %d", l2.LogEndOffset(), end)
			}
			if contains(lb2.String(), "truncating") || contains(lb2.String(), "rebuilding") {
				t.Errorf("second open repaired again:\n%s", lb2.String())
			}
			checkContents(t, l2)
		})
	}
}

// segmentHolding returns the original segment holding offset.
func (f *crashFixture) segmentHolding(t *testing.T, offset int64) SegmentInfo {
	for _, s := range f.segs {
		if s.BaseOffset <= offset && offset < s.NextOffset {
			return s
		}
	}
	if t != nil {
		t.Fatalf("no segment holds %d", offset)
	}
	return SegmentInfo{}
}

func TestRecoveryOfArbitraryFilesNeverPanics(t *testing.T) {
	// A directory of junk: stray files, an index without a log, a log of noise.
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"00000000000000000005.index":     {1, 2, 3},
		"00000000000000000000.log":       bytes.Repeat([]byte{0xff}, 500),
		"00000000000000000000.timeindex": {9},
		"leader-epoch-checkpoint.tmp":    {1},
		"recovery-point":                 {0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 9, 1, 2, 3, 4},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, _ := openTest(t, dir, smallConfig())
	if l.LogEndOffset() != 0 || l.Size() != 0 {
		t.Fatalf("junk log: end %d size %d", l.LogEndOffset(), l.Size())
	}
	for _, n := range []string{"00000000000000000005.index", "leader-epoch-checkpoint.tmp"} {
		if _, err := os.Stat(filepath.Join(dir, n)); !os.IsNotExist(err) {
			t.Errorf("%s not removed: %v", n, err)
		}
	}
	appendN(t, l, 2, 0, 0)
	checkContents(t, l)
}

// FuzzRecoverSegment recovers a log whose only segment holds arbitrary
// bytes: Open must not panic, must keep a valid prefix of whole batches and
// must accept appends after it.
func FuzzRecoverSegment(f *testing.F) {
	var valid []byte
	for i := range 4 {
		b := makeBatch(f, int64(i*2), 2, 100, kafkaproto.CodecNone)
		kafkaproto.StampBaseOffset(b, int64(i*2))
		valid = append(valid, b...)
	}
	f.Add(valid, []byte{})
	f.Add(valid[:len(valid)-3], []byte{0, 0, 0, 5, 0, 0, 0, 100})
	f.Add([]byte{0, 0, 0}, []byte{1})
	f.Fuzz(func(t *testing.T, seg, index []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(segmentName(dir, 0, ".log"), seg, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(segmentName(dir, 0, ".index"), index, 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := Open(dir, smallConfig(), newLogger(&logBuffer{}))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		end := l.LogEndOffset()
		if l.Size() > int64(len(seg)) {
			t.Fatalf("size %d from %d bytes", l.Size(), len(seg))
		}
		if b, err := l.Read(0, 1<<20, -1, true); err != nil || (end > 0) != (len(b) > 0) {
			t.Fatalf("read: %d bytes, %v (end %d)", len(b), err, end)
		} else if !bytes.Equal(b, seg[:len(b)]) {
			t.Fatal("read returned bytes that are not the segment prefix")
		}
		res, err := l.AppendAsLeader(makeBatch(t, end, 1, 0, kafkaproto.CodecNone), 0)
		if err != nil || res.FirstOffset != end {
			t.Fatalf("append after recovery: %+v %v", res, err)
		}
	})
}

// FuzzDecoders feeds arbitrary bytes to every file decoder.
func FuzzDecoders(f *testing.F) {
	f.Add(appendOffsetEntry(nil, offsetEntry{1, 100}))
	f.Add(appendTimeEntry(nil, timeEntry{5, 1}))
	f.Add(encodeCheckpoint((&epochCache{entries: []epochEntry{{1, 0}, {3, 10}}}).encode()))
	f.Fuzz(func(t *testing.T, b []byte) {
		if offs, err := decodeOffsetIndex(b, 1<<20); err == nil {
			for i := 1; i < len(offs); i++ {
				if offs[i].rel <= offs[i-1].rel || offs[i].pos <= offs[i-1].pos {
					t.Fatal("accepted unordered offset index")
				}
			}
			_ = floorPosition(offs, 7)
		}
		if times, err := decodeTimeIndex(b); err == nil && len(times)*timeEntrySize != len(b) {
			t.Fatal("time index length")
		}
		if p, err := decodeCheckpoint(b); err == nil {
			if len(p)+12 != len(b) {
				t.Fatal("checkpoint payload length")
			}
			if e, err := decodeEpochs(p); err == nil {
				c := epochCache{entries: e}
				c.endOffsetFor(2, 100)
				c.truncateFromStart(5)
				c.truncateFromEnd(7)
			}
		}
		_, _ = decodeEpochs(b)
	})
}
