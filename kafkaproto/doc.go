// Package kafkaproto is Strata's wire layer: size-checked request frames,
// request and response headers, the table of supported API versions, record
// batches (magic 2: header, CRC32C, in-place stamping, validation, record
// encoding) and the compression codecs Kafka clients use.
//
// Message bodies are the structs of github.com/twmb/franz-go/pkg/kmsg; this
// package only frames, classifies and validates them. It holds no broker
// state, starts no goroutines of its own and imports nothing else of this
// project.
//
// Every decoder here is bounded by its input: it never reads past the slice it
// was given, never allocates from an unchecked length, and reports bad input
// as an error (never a panic).
//
// # Frames
//
// Every request and response on a Kafka connection is one size-prefixed frame.
// ReadFrame checks the size against the limit (socket.request.max.bytes)
// before allocating anything.
//
//	+-----------------+--------------------------------+
//	| size int32 (BE) | size bytes: header + body      |
//	+-----------------+--------------------------------+
//
// # Request header
//
// Header v1 is used for non-flexible versions, v2 (KIP-482) adds a tagged-field
// section when the (api key, api version) pair is flexible. The client id stays
// a classic nullable string (int16 length, -1 = null) in both.
//
//	offset  size
//	0       2     api key          int16
//	2       2     api version      int16
//	4       4     correlation id   int32
//	8       2     client id length int16 (-1 = null)
//	10      n     client id bytes
//	10+n    …     v2 only: tagged fields = uvarint count, then per field
//	              uvarint tag, uvarint size, size bytes
//	…             request body (kmsg ReadFrom)
//
// # Response header
//
//	+-----------------+------------------+-------------------+--------------+
//	| size int32 (BE) | correlation int32| 0x00 (flexible,   | response body|
//	|                 |                  | not ApiVersions)  | (kmsg)       |
//	+-----------------+------------------+-------------------+--------------+
//
// ApiVersions responses always use header v0 (no tagged-field byte) so that a
// client that sent a version we do not know can still read our answer
// (KIP-511).
//
// # Record batch (magic 2)
//
// The header is RecordBatchHeaderSize (61) bytes, all integers big endian:
//
//	offset  size  field
//	0       8     base offset             int64   ┐ not covered by the CRC:
//	8       4     batch length            int32   │ the broker stamps base offset
//	12      4     partition leader epoch  int32   ┘ and leader epoch in place
//	16      1     magic                   int8 = 2
//	17      4     crc                     uint32  CRC32C of bytes [21, end)
//	21      2     attributes              int16   ┐
//	23      4     last offset delta       int32   │
//	27      8     base timestamp          int64   │
//	35      8     max timestamp           int64   │ covered by the CRC
//	43      8     producer id             int64   │
//	51      2     producer epoch          int16   │
//	53      4     base sequence           int32   │
//	57      4     record count            int32   │
//	61      …     records (compressed as one block when codec != 0)
//
// batch length counts every byte after the batch length field, so a batch
// occupies 12 + batch length bytes. Attributes:
//
//	bit 0-2  compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd
//	bit 3    timestamp type: 0 create time, 1 log append time
//	bit 4    transactional
//	bit 5    control batch (transaction markers; never from a producer)
//	bit 6    has delete horizon (compaction)
//
// # Record (inside the records section, after decompression)
//
// varint = zigzag signed varint (as protobuf sint32/sint64):
//
//	length          varint   bytes of the record after this field
//	attributes      int8     unused, 0
//	timestamp delta varlong  timestamp = base timestamp + delta
//	offset delta    varint   offset = base offset + delta
//	key length      varint   -1 = null
//	key             bytes
//	value length    varint   -1 = null
//	value           bytes
//	header count    varint
//	headers         per header: key length varint, key (string),
//	                value length varint (-1 = null), value
//
// # Compression
//
// Batches are stored as the producer sent them; the broker never recompresses
// on the produce path. When something must look inside a batch, Decompress
// accepts gzip, snappy (raw block as sent by librdkafka and franz-go, and the
// xerial framing of the Java client), LZ4 frame and zstd, always bounded by a
// decompressed-size limit. Xerial snappy framing:
//
//	+------------------------+---------------+---------------+
//	| magic "\x82SNAPPY\x00" | version int32 | compat int32  |   16 bytes
//	+------------------------+---------------+---------------+
//	| block length int32 | raw snappy block |  ... repeated
//	+--------------------+------------------+
package kafkaproto
