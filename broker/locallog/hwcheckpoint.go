package locallog

// The high watermark is the broker's business (replication), not the log's;
// the log only keeps its checkpoint file beside its other checkpoints so
// the file lives and dies with the partition directory.

// highWatermarkFile holds the partition's last checkpointed high watermark
// (Kafka's replication-offset-checkpoint, one file per partition).
const highWatermarkFile = "high-watermark-checkpoint"

// WriteHighWatermark atomically replaces the high-watermark checkpoint
// with hw (write tmp, fsync, rename, fsync the directory).
func (l *Log) WriteHighWatermark(hw int64) error {
	return writeOffsetCheckpoint(l.dir, highWatermarkFile, hw)
}

// ReadHighWatermark returns the checkpointed high watermark. A missing
// checkpoint is an error matching os.ErrNotExist, a damaged one an error
// matching ErrCorrupt. The value is not checked against the log: callers
// cap it at the log end.
func (l *Log) ReadHighWatermark() (int64, error) {
	return readOffsetCheckpoint(l.dir, highWatermarkFile)
}
