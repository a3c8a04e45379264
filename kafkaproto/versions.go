package kafkaproto

import (
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// VersionTable is the set of (api key, version range) the broker implements,
// built from the handlers that register themselves, so that ApiVersions
// advertises exactly what is served. The zero value is an empty table.
//
// Register everything before serving: Register must not run concurrently with
// the other methods, which are safe for concurrent use among themselves.
type VersionTable struct {
	byKey map[int16]versionRange
}

type versionRange struct{ min, max int16 }

// Register adds key with versions min..max. It panics on a negative key or
// version, min > max, or a key registered twice: all programmer errors.
func (t *VersionTable) Register(key, min, max int16) {
	if key < 0 || min < 0 || min > max {
		panic(fmt.Sprintf("kafkaproto: register api key %d versions %d..%d: invalid range", key, min, max))
	}
	if _, dup := t.byKey[key]; dup {
		panic(fmt.Sprintf("kafkaproto: register api key %d: registered twice", key))
	}
	if t.byKey == nil {
		t.byKey = make(map[int16]versionRange)
	}
	t.byKey[key] = versionRange{min, max}
}

// Lookup returns the registered range of key.
func (t *VersionTable) Lookup(key int16) (min, max int16, ok bool) {
	r, ok := t.byKey[key]
	return r.min, r.max, ok
}

// Supports reports whether key is registered and version is in its range.
func (t *VersionTable) Supports(key, version int16) bool {
	r, ok := t.byKey[key]
	return ok && version >= r.min && version <= r.max
}

// APIKeys returns the registered ranges sorted by key, as ApiVersions lists them.
func (t *VersionTable) APIKeys() []kmsg.ApiVersionsResponseApiKey {
	keys := make([]kmsg.ApiVersionsResponseApiKey, 0, len(t.byKey))
	for k, r := range t.byKey {
		keys = append(keys, kmsg.ApiVersionsResponseApiKey{ApiKey: k, MinVersion: r.min, MaxVersion: r.max})
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].ApiKey < keys[j].ApiKey })
	return keys
}

// ApiVersionsResponse builds the answer to an ApiVersions request of the given
// version. When the version is above what the table supports for ApiVersions
// (key 18), or key 18 is not registered, the answer is KIP-511's: Version 0,
// ErrorCode UNSUPPORTED_VERSION (35) and the full key list, so the client
// retries with a version we know. Otherwise the response has that version and
// ErrorCode 0. Fields of newer versions (features, throttle) keep kmsg's
// defaults; the caller may fill them.
func (t *VersionTable) ApiVersionsResponse(version int16) *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.ApiKeys = t.APIKeys()
	min, max, ok := t.Lookup(apiVersionsKey)
	if !ok || version > max || version < min {
		resp.Version = 0
		resp.ErrorCode = kerr.UnsupportedVersion.Code
		return resp
	}
	resp.Version = version
	return resp
}
