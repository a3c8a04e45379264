package tiering

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Object layout (DESIGN.md "Object layout"). Every upload attempt of a
// segment writes three objects under a fresh segment id, never overwriting:
//
//	<topic>-<topicIdHex>/<partition>/<20-digit base offset>-<segmentIdHex>.log       the segment's batches, verbatim
//	                                                                    .indexes   offset index, time index, producer snapshot, leader epochs
//	                                                                    .manifest  JSON Manifest, written last
//
// Keys are relative to the storage's prefix (the cluster's prefix lives in
// the remote URL).
const (
	ExtLog      = ".log"
	ExtIndexes  = ".indexes"
	ExtManifest = ".manifest"
)

// ManifestVersion is the format of Manifest written by this code.
const ManifestVersion = 1

// PartitionPrefix is the key prefix of one partition's objects, ending in "/".
func PartitionPrefix(topic string, topicID [16]byte, partition int32) string {
	return topic + "-" + hex.EncodeToString(topicID[:]) + "/" + strconv.FormatInt(int64(partition), 10) + "/"
}

// SegmentKey is the key of one object of one upload attempt; ext is ExtLog,
// ExtIndexes or ExtManifest.
func SegmentKey(topic string, topicID [16]byte, partition int32, base int64, id [16]byte, ext string) string {
	return fmt.Sprintf("%s%020d-%s%s", PartitionPrefix(topic, topicID, partition), base, hex.EncodeToString(id[:]), ext)
}

// ParseSegmentKey splits a key made by SegmentKey (after the partition
// prefix) into its base offset, segment id and extension.
func ParseSegmentKey(name string) (base int64, id [16]byte, ext string, ok bool) {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	dot := strings.IndexByte(name, '.')
	if dot != 20+1+32 || name[20] != '-' {
		return 0, id, "", false
	}
	base, err := strconv.ParseInt(name[:20], 10, 64)
	if err != nil || base < 0 {
		return 0, id, "", false
	}
	if _, err := hex.Decode(id[:], []byte(name[21:dot])); err != nil {
		return 0, id, "", false
	}
	return base, id, name[dot:], true
}

// Section locates one part inside the .indexes object.
type Section struct {
	Pos int64 `json:"pos"`
	Len int64 `json:"len"`
}

// ManifestEpoch is one entry of a segment's leader-epoch history.
type ManifestEpoch struct {
	Epoch       int32 `json:"epoch"`
	StartOffset int64 `json:"start_offset"`
}

// Manifest describes one uploaded segment so that a bucket describes itself
// and can be re-attached to a new cluster. Formats inside .indexes:
//
//	offset index: 8-byte entries (relative offset uint32, position uint32), big endian
//	time index:   12-byte entries (timestamp int64, relative offset uint32), big endian
//	producer snapshot and leader epochs: the local log's checkpoint payloads
//	(the leader epochs section holds the partition's history up to EndOffset)
type Manifest struct {
	Version      int             `json:"version"`
	Topic        string          `json:"topic"`
	TopicID      string          `json:"topic_id"` // hex
	Partition    int32           `json:"partition"`
	SegmentID    string          `json:"segment_id"` // hex
	BaseOffset   int64           `json:"base_offset"`
	EndOffset    int64           `json:"end_offset"` // inclusive
	MaxTimestamp int64           `json:"max_timestamp"`
	BrokerID     int32           `json:"broker_id"`
	LeaderEpoch  int32           `json:"leader_epoch"` // of the uploader
	Epochs       []ManifestEpoch `json:"epochs"`       // epochs within the segment
	LogSize      int64           `json:"log_size"`
	LogCRC32C    uint32          `json:"log_crc32c"`
	IndexesSize  int64           `json:"indexes_size"`
	OffsetIndex  Section         `json:"offset_index"`
	TimeIndex    Section         `json:"time_index"`
	ProducerSnap Section         `json:"producer_snapshot"`
	EpochHistory Section         `json:"leader_epoch_history"`
	CreatedMs    int64           `json:"created_ms"`
}

// EncodeManifest renders m as JSON.
func EncodeManifest(m *Manifest) ([]byte, error) { return json.MarshalIndent(m, "", " ") }

// DecodeManifest parses and sanity-checks a manifest.
func DecodeManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrCorrupt, err)
	}
	if m.Version != ManifestVersion {
		return nil, fmt.Errorf("%w: manifest version %d (want %d)", ErrCorrupt, m.Version, ManifestVersion)
	}
	if m.BaseOffset < 0 || m.EndOffset < m.BaseOffset || m.LogSize <= 0 {
		return nil, fmt.Errorf("%w: manifest offsets %d..%d size %d", ErrCorrupt, m.BaseOffset, m.EndOffset, m.LogSize)
	}
	for _, s := range []Section{m.OffsetIndex, m.TimeIndex, m.ProducerSnap, m.EpochHistory} {
		if s.Pos < 0 || s.Len < 0 || s.Pos+s.Len > m.IndexesSize {
			return nil, fmt.Errorf("%w: manifest section %+v outside indexes of %d bytes", ErrCorrupt, s, m.IndexesSize)
		}
	}
	return &m, nil
}
