package locallog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// Checkpoint file names inside a partition directory.
const (
	leaderEpochFile   = "leader-epoch-checkpoint"
	logStartFile      = "log-start-offset"
	recoveryPointFile = "recovery-point"
	cleanShutdownFile = ".clean-shutdown"
	checkpointVersion = 1
	checkpointMaxSize = 1 << 24
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeCheckpoint frames payload as version | length | payload | crc32c.
func encodeCheckpoint(payload []byte) []byte {
	b := make([]byte, 8, 12+len(payload))
	binary.BigEndian.PutUint32(b[0:], checkpointVersion)
	binary.BigEndian.PutUint32(b[4:], uint32(len(payload)))
	b = append(b, payload...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeCheckpoint returns the payload of a framed checkpoint, or an error
// wrapping ErrCorrupt.
func decodeCheckpoint(b []byte) ([]byte, error) {
	if len(b) < 12 {
		return nil, fmt.Errorf("checkpoint of %d bytes: %w", len(b), ErrCorrupt)
	}
	if v := binary.BigEndian.Uint32(b[0:]); v != checkpointVersion {
		return nil, fmt.Errorf("checkpoint version %d: %w", v, ErrCorrupt)
	}
	n := binary.BigEndian.Uint32(b[4:])
	if uint64(n)+12 != uint64(len(b)) {
		return nil, fmt.Errorf("checkpoint length %d in %d bytes: %w", n, len(b), ErrCorrupt)
	}
	body := b[:8+n]
	if want, got := binary.BigEndian.Uint32(b[8+n:]), crc32.Checksum(body, castagnoli); want != got {
		return nil, fmt.Errorf("checkpoint crc %08x, computed %08x: %w", want, got, ErrCorrupt)
	}
	return b[8 : 8+n], nil
}

// writeCheckpoint atomically replaces dir/name: write tmp, fsync, rename,
// fsync the directory.
func writeCheckpoint(dir, name string, payload []byte) error {
	path := filepath.Join(dir, name)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write checkpoint %s: %w", path, err)
	}
	_, err = f.Write(encodeCheckpoint(payload))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write checkpoint %s: %w", path, err)
	}
	return nil
}

// readCheckpoint returns the payload of dir/name. A missing file returns an
// error matching os.ErrNotExist; a damaged one an error matching ErrCorrupt.
func readCheckpoint(dir, name string) ([]byte, error) {
	path := filepath.Join(dir, name)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read checkpoint %s: %w", path, err)
	}
	if fi.Size() > checkpointMaxSize {
		return nil, fmt.Errorf("read checkpoint %s: %d bytes: %w", path, fi.Size(), ErrCorrupt)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read checkpoint %s: %w", path, err)
	}
	p, err := decodeCheckpoint(b)
	if err != nil {
		return nil, fmt.Errorf("read checkpoint %s: %w", path, err)
	}
	return p, nil
}

func writeOffsetCheckpoint(dir, name string, off int64) error {
	return writeCheckpoint(dir, name, binary.BigEndian.AppendUint64(nil, uint64(off)))
}

// readOffsetCheckpoint returns (offset, true) for a valid checkpoint.
func readOffsetCheckpoint(dir, name string) (int64, error) {
	p, err := readCheckpoint(dir, name)
	if err != nil {
		return 0, err
	}
	if len(p) != 8 {
		return 0, fmt.Errorf("read checkpoint %s: payload of %d bytes: %w", name, len(p), ErrCorrupt)
	}
	off := int64(binary.BigEndian.Uint64(p))
	if off < 0 {
		return 0, fmt.Errorf("read checkpoint %s: offset %d: %w", name, off, ErrCorrupt)
	}
	return off, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func isNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }
