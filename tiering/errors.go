package tiering

import "errors"

var (
	// ErrCorrupt: a remote object does not hold what its manifest or record
	// says (bad framing, CRC, sizes). Never served as records.
	ErrCorrupt = errors.New("tiering: corrupt remote data")
	// ErrUnavailable: the object store could not be reached in time;
	// retriable.
	ErrUnavailable = errors.New("tiering: remote storage unavailable")
	// ErrNotTiered: the offset is not held by any finished remote segment.
	ErrNotTiered = errors.New("tiering: offset not in the remote tier")
)
