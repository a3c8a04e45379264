package kafkaproto

import (
	"encoding/binary"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// apiVersionsKey is the api key of ApiVersions, whose response header is
// always v0 and whose newer-than-known versions get a KIP-511 answer.
const apiVersionsKey = 18

// controlledShutdownKey v0 is the one request sent with header v0 (no client id).
const controlledShutdownKey = 7

// RequestHeader is a parsed Kafka request header (v0, v1 or v2).
type RequestHeader struct {
	APIKey        int16
	APIVersion    int16
	CorrelationID int32
	ClientID      *string
	// Flexible is true when the header was v2 (tagged fields), which is also
	// when the body and the response use the flexible encoding.
	Flexible bool
}

// ParseRequestHeader parses the header at the start of frame (a payload from
// ReadFrame) and returns it with the body that follows. The body aliases frame.
//
// Header v2 is assumed when kmsg says (key, version) is flexible, even for a
// version newer than kmsg knows (for ApiVersions: version >= 3, as KIP-511
// requires). For a key kmsg does not know, the header is parsed as v1 with
// Flexible=false and no error, so the caller can still answer or close the
// connection knowing the correlation id. Errors wrap ErrMalformed; on error
// the returned header holds whatever was parsed (at least key, version and
// correlation id when the frame had 8 bytes).
func ParseRequestHeader(frame []byte) (hdr RequestHeader, body []byte, err error) {
	if len(frame) < 8 {
		return hdr, nil, fmt.Errorf("parse request header: %d bytes: %w", len(frame), ErrMalformed)
	}
	hdr.APIKey = int16(binary.BigEndian.Uint16(frame[0:]))
	hdr.APIVersion = int16(binary.BigEndian.Uint16(frame[2:]))
	hdr.CorrelationID = int32(binary.BigEndian.Uint32(frame[4:]))
	rest := frame[8:]

	if hdr.APIKey == controlledShutdownKey && hdr.APIVersion == 0 {
		return hdr, rest, nil // header v0: no client id
	}

	if len(rest) < 2 {
		return hdr, nil, fmt.Errorf("parse request header key %d v%d: client id length: %w", hdr.APIKey, hdr.APIVersion, ErrMalformed)
	}
	idLen := int16(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	switch {
	case idLen == -1:
	case idLen < -1 || int(idLen) > len(rest):
		return hdr, nil, fmt.Errorf("parse request header key %d v%d: client id length %d: %w", hdr.APIKey, hdr.APIVersion, idLen, ErrMalformed)
	default:
		id := string(rest[:idLen])
		hdr.ClientID = &id
		rest = rest[idLen:]
	}

	hdr.Flexible = isFlexible(hdr.APIKey, hdr.APIVersion)
	if hdr.Flexible {
		rest, err = skipTags(rest)
		if err != nil {
			return hdr, nil, fmt.Errorf("parse request header key %d v%d: tagged fields: %w", hdr.APIKey, hdr.APIVersion, err)
		}
	}
	return hdr, rest, nil
}

// isFlexible reports whether (key, version) uses header v2 / flexible bodies.
func isFlexible(key, version int16) bool {
	if key == apiVersionsKey {
		return version >= 3
	}
	req := kmsg.RequestForKey(key)
	if req == nil {
		return false
	}
	req.SetVersion(version)
	return req.IsFlexible()
}

// skipTags skips a tagged-field section: uvarint count, then per field uvarint
// tag, uvarint size and size bytes.
func skipTags(b []byte) ([]byte, error) {
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return nil, fmt.Errorf("count: %w", ErrMalformed)
	}
	b = b[n:]
	if count > uint64(len(b)) { // every field takes at least 2 bytes
		return nil, fmt.Errorf("count %d: %w", count, ErrMalformed)
	}
	for i := uint64(0); i < count; i++ {
		_, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, fmt.Errorf("tag %d: %w", i, ErrMalformed)
		}
		b = b[n:]
		size, n := binary.Uvarint(b)
		if n <= 0 || size > uint64(len(b)-n) {
			return nil, fmt.Errorf("tag %d size: %w", i, ErrMalformed)
		}
		b = b[n+int(size):]
	}
	return b, nil
}

// DecodeRequest decodes body into the kmsg request for hdr.APIKey and
// hdr.APIVersion. A key or version kmsg does not know returns an error
// wrapping both ErrUnsupportedVersion and ErrMalformed; bytes that do not
// decode return an error wrapping ErrMalformed.
//
// The request's byte slices (Produce records, for example) alias body: do not
// reuse the frame buffer while the request is in use.
func DecodeRequest(hdr RequestHeader, body []byte) (kmsg.Request, error) {
	req := kmsg.RequestForKey(hdr.APIKey)
	if req == nil || hdr.APIVersion < 0 || hdr.APIVersion > req.MaxVersion() {
		return nil, fmt.Errorf("decode request key %d v%d: %w: %w", hdr.APIKey, hdr.APIVersion, ErrUnsupportedVersion, ErrMalformed)
	}
	req.SetVersion(hdr.APIVersion)
	if err := req.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("decode request key %d v%d: %v: %w", hdr.APIKey, hdr.APIVersion, err, ErrMalformed)
	}
	return req, nil
}

// AppendResponse appends one response frame to dst: int32 size, correlation
// id, an empty tagged-field section when resp's version is flexible (except
// for ApiVersions, whose response header is always v0), then the body.
// resp's version must already be set to the request's version.
func AppendResponse(dst []byte, correlationID int32, resp kmsg.Response) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(correlationID))
	if resp.IsFlexible() && resp.Key() != apiVersionsKey {
		dst = append(dst, 0)
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}
