package kafkaproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func strPtr(s string) *string { return &s }

// encodeRequest is a minimal client-side encoder: the frame payload (no size
// prefix) of req with header v1, or v2 when flexible.
func encodeRequest(req kmsg.Request, corr int32, clientID *string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(req.Key()))
	b = binary.BigEndian.AppendUint16(b, uint16(req.GetVersion()))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	if clientID == nil {
		b = binary.BigEndian.AppendUint16(b, 0xffff)
	} else {
		b = binary.BigEndian.AppendUint16(b, uint16(len(*clientID)))
		b = append(b, *clientID...)
	}
	if req.IsFlexible() {
		b = append(b, 0)
	}
	return req.AppendTo(b)
}

func metadataRequest(version int16) *kmsg.MetadataRequest {
	req := kmsg.NewPtrMetadataRequest()
	req.SetVersion(version)
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = strPtr("orders")
	req.Topics = append(req.Topics, t)
	return req
}

func TestParseRequestHeaderAndDecode(t *testing.T) {
	apiv3 := kmsg.NewPtrApiVersionsRequest()
	apiv3.SetVersion(3)
	apiv3.ClientSoftwareName = "strata-test"
	apiv3.ClientSoftwareVersion = "1.0"
	tests := []struct {
		name     string
		req      kmsg.Request
		clientID *string
		flexible bool
	}{
		{"metadata v0 header v1", metadataRequest(0), strPtr("client-a"), false},
		{"metadata v8 header v1", metadataRequest(8), strPtr(""), false},
		{"metadata v9 header v2", metadataRequest(9), strPtr("client-b"), true},
		{"metadata v12 header v2 null client", metadataRequest(12), nil, true},
		{"api versions v3 header v2", apiv3, strPtr("c"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := encodeRequest(tt.req, 4242, tt.clientID)
			hdr, body, err := ParseRequestHeader(frame)
			if err != nil {
				t.Fatal(err)
			}
			want := RequestHeader{APIKey: tt.req.Key(), APIVersion: tt.req.GetVersion(), CorrelationID: 4242, ClientID: tt.clientID, Flexible: tt.flexible}
			if !reflect.DeepEqual(hdr, want) {
				t.Fatalf("header = %+v, want %+v", hdr, want)
			}
			wantBody := tt.req.AppendTo(nil)
			if !bytes.Equal(body, wantBody) {
				t.Fatalf("body = %x, want %x", body, wantBody)
			}
			got, err := DecodeRequest(hdr, body)
			if err != nil {
				t.Fatal(err)
			}
			if got.Key() != tt.req.Key() || got.GetVersion() != tt.req.GetVersion() {
				t.Fatalf("decoded key %d v%d", got.Key(), got.GetVersion())
			}
			if re := got.AppendTo(nil); !bytes.Equal(re, wantBody) {
				t.Fatalf("decoded request re-encodes to %x, want %x", re, wantBody)
			}
		})
	}
}

func TestParseRequestHeaderMetadataTopics(t *testing.T) {
	hdr, body, err := ParseRequestHeader(encodeRequest(metadataRequest(12), 1, strPtr("x")))
	if err != nil {
		t.Fatal(err)
	}
	req, err := DecodeRequest(hdr, body)
	if err != nil {
		t.Fatal(err)
	}
	md := req.(*kmsg.MetadataRequest)
	if len(md.Topics) != 1 || md.Topics[0].Topic == nil || *md.Topics[0].Topic != "orders" {
		t.Fatalf("topics = %+v, want [orders]", md.Topics)
	}
}

// rawHeader builds a header by hand: key, version, correlation, client id and
// optional raw trailing bytes.
func rawHeader(key, version int16, corr int32, clientID string, rest ...byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, uint16(len(clientID)))
	b = append(b, clientID...)
	return append(b, rest...)
}

func TestParseRequestHeaderSpecialCases(t *testing.T) {
	tests := []struct {
		name     string
		frame    []byte
		want     RequestHeader
		wantBody []byte
		wantErr  error
	}{
		{
			name:     "unknown key parsed as v1",
			frame:    rawHeader(9999, 3, 77, "cli", 0xaa, 0xbb),
			want:     RequestHeader{APIKey: 9999, APIVersion: 3, CorrelationID: 77, ClientID: strPtr("cli")},
			wantBody: []byte{0xaa, 0xbb},
		},
		{
			name:     "api versions newer than kmsg knows is flexible",
			frame:    rawHeader(18, 99, 5, "cli", 0, 0xcc),
			want:     RequestHeader{APIKey: 18, APIVersion: 99, CorrelationID: 5, ClientID: strPtr("cli"), Flexible: true},
			wantBody: []byte{0xcc},
		},
		{
			name:     "api versions v2 is not flexible",
			frame:    rawHeader(18, 2, 5, "cli"),
			want:     RequestHeader{APIKey: 18, APIVersion: 2, CorrelationID: 5, ClientID: strPtr("cli")},
			wantBody: []byte{},
		},
		{
			name: "header v2 with tagged fields skipped",
			// 2 tags: tag 0 size 3 "xyz", tag 5 size 0; then body 0x01.
			frame:    rawHeader(3, 12, 8, "", 2, 0, 3, 'x', 'y', 'z', 5, 0, 0x01),
			want:     RequestHeader{APIKey: 3, APIVersion: 12, CorrelationID: 8, ClientID: strPtr(""), Flexible: true},
			wantBody: []byte{0x01},
		},
		{
			name:     "controlled shutdown v0 has header v0",
			frame:    append(binary.BigEndian.AppendUint64(nil, 0x0007_0000_0000_0009), 0, 0, 0, 1),
			want:     RequestHeader{APIKey: 7, APIVersion: 0, CorrelationID: 9},
			wantBody: []byte{0, 0, 0, 1},
		},
		{
			name:    "too short",
			frame:   []byte{0, 3, 0, 1, 0, 0, 0},
			wantErr: ErrMalformed,
		},
		{
			name:    "missing client id length",
			frame:   []byte{0, 3, 0, 1, 0, 0, 0, 1},
			want:    RequestHeader{APIKey: 3, APIVersion: 1, CorrelationID: 1},
			wantErr: ErrMalformed,
		},
		{
			name:    "client id longer than frame",
			frame:   []byte{0, 3, 0, 1, 0, 0, 0, 1, 0, 9, 'a'},
			want:    RequestHeader{APIKey: 3, APIVersion: 1, CorrelationID: 1},
			wantErr: ErrMalformed,
		},
		{
			name:    "client id length below -1",
			frame:   []byte{0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xfe},
			want:    RequestHeader{APIKey: 3, APIVersion: 1, CorrelationID: 1},
			wantErr: ErrMalformed,
		},
		{
			name:    "flexible header without tag section",
			frame:   rawHeader(3, 12, 8, "c"),
			want:    RequestHeader{APIKey: 3, APIVersion: 12, CorrelationID: 8, ClientID: strPtr("c"), Flexible: true},
			wantErr: ErrMalformed,
		},
		{
			name:    "tag size past the end",
			frame:   rawHeader(3, 12, 8, "c", 1, 0, 10, 'x'),
			want:    RequestHeader{APIKey: 3, APIVersion: 12, CorrelationID: 8, ClientID: strPtr("c"), Flexible: true},
			wantErr: ErrMalformed,
		},
		{
			name:    "tag count larger than bytes",
			frame:   rawHeader(3, 12, 8, "c", 100, 0),
			want:    RequestHeader{APIKey: 3, APIVersion: 12, CorrelationID: 8, ClientID: strPtr("c"), Flexible: true},
			wantErr: ErrMalformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr, body, err := ParseRequestHeader(tt.frame)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(hdr, tt.want) {
				t.Fatalf("header = %+v, want %+v", hdr, tt.want)
			}
			if tt.wantErr == nil && !bytes.Equal(body, tt.wantBody) {
				t.Fatalf("body = %x, want %x", body, tt.wantBody)
			}
		})
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	tests := []struct {
		name      string
		hdr       RequestHeader
		body      []byte
		unsupport bool
	}{
		{"unknown key", RequestHeader{APIKey: 9999}, nil, true},
		{"version above kmsg", RequestHeader{APIKey: 18, APIVersion: 99, Flexible: true}, []byte{0}, true},
		{"negative version", RequestHeader{APIKey: 3, APIVersion: -1}, nil, true},
		{"truncated body", RequestHeader{APIKey: 3, APIVersion: 1}, []byte{0, 0, 0, 5, 0}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeRequest(tt.hdr, tt.body)
			if req != nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("req = %v, err = %v, want nil and ErrMalformed", req, err)
			}
			if got := errors.Is(err, ErrUnsupportedVersion); got != tt.unsupport {
				t.Fatalf("errors.Is(err, ErrUnsupportedVersion) = %v, want %v (%v)", got, tt.unsupport, err)
			}
		})
	}
}

func TestAppendResponse(t *testing.T) {
	mdResp := func(version int16) kmsg.Response {
		r := kmsg.NewPtrMetadataResponse()
		r.SetVersion(version)
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID, b.Host, b.Port = 1, "127.0.0.1", 9092
		r.Brokers = append(r.Brokers, b)
		return r
	}
	apiResp := func(version int16) kmsg.Response {
		r := kmsg.NewPtrApiVersionsResponse()
		r.SetVersion(version)
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = 3, 0, 12
		r.ApiKeys = append(r.ApiKeys, k)
		return r
	}
	tests := []struct {
		name      string
		resp      kmsg.Response
		tagByte   bool
		newDecode func() kmsg.Response
	}{
		{"metadata v1 header v0", mdResp(1), false, func() kmsg.Response { return kmsg.NewPtrMetadataResponse() }},
		{"metadata v9 header v1", mdResp(9), true, func() kmsg.Response { return kmsg.NewPtrMetadataResponse() }},
		{"metadata v12 header v1", mdResp(12), true, func() kmsg.Response { return kmsg.NewPtrMetadataResponse() }},
		{"api versions v0", apiResp(0), false, func() kmsg.Response { return kmsg.NewPtrApiVersionsResponse() }},
		{"api versions v3 header stays v0", apiResp(3), false, func() kmsg.Response { return kmsg.NewPtrApiVersionsResponse() }},
		{"api versions v4 header stays v0", apiResp(4), false, func() kmsg.Response { return kmsg.NewPtrApiVersionsResponse() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("previous response")
			out := AppendResponse(append([]byte(nil), prefix...), -7, tt.resp)
			if !bytes.Equal(out[:len(prefix)], prefix) {
				t.Fatal("AppendResponse clobbered dst")
			}
			frame := out[len(prefix):]
			if size := binary.BigEndian.Uint32(frame); int(size) != len(frame)-4 {
				t.Fatalf("size prefix %d, frame payload %d", size, len(frame)-4)
			}
			if corr := int32(binary.BigEndian.Uint32(frame[4:])); corr != -7 {
				t.Fatalf("correlation id %d, want -7", corr)
			}
			body := frame[8:]
			if tt.tagByte {
				if body[0] != 0 {
					t.Fatalf("tagged-field byte %#x, want 0", body[0])
				}
				body = body[1:]
			}
			if want := tt.resp.AppendTo(nil); !bytes.Equal(body, want) {
				t.Fatalf("body = %x, want %x", body, want)
			}
			dec := tt.newDecode()
			dec.SetVersion(tt.resp.GetVersion())
			if err := dec.ReadFrom(body); err != nil {
				t.Fatalf("client decode: %v", err)
			}
			if !bytes.Equal(dec.AppendTo(nil), body) {
				t.Fatal("client decode does not round trip")
			}
		})
	}
}

func TestVersionTable(t *testing.T) {
	var vt VersionTable
	if _, _, ok := vt.Lookup(3); ok {
		t.Fatal("empty table has key 3")
	}
	vt.Register(18, 0, 4)
	vt.Register(3, 0, 12)
	vt.Register(0, 3, 11)
	if min, max, ok := vt.Lookup(3); !ok || min != 0 || max != 12 {
		t.Fatalf("Lookup(3) = %d, %d, %v", min, max, ok)
	}
	supports := []struct {
		key, version int16
		want         bool
	}{
		{0, 2, false}, {0, 3, true}, {0, 11, true}, {0, 12, false},
		{3, 0, true}, {3, 13, false}, {18, 4, true}, {18, 5, false}, {1, 4, false}, {3, -1, false},
	}
	for _, s := range supports {
		if got := vt.Supports(s.key, s.version); got != s.want {
			t.Errorf("Supports(%d, %d) = %v, want %v", s.key, s.version, got, s.want)
		}
	}
	want := []kmsg.ApiVersionsResponseApiKey{
		{ApiKey: 0, MinVersion: 3, MaxVersion: 11},
		{ApiKey: 3, MinVersion: 0, MaxVersion: 12},
		{ApiKey: 18, MinVersion: 0, MaxVersion: 4},
	}
	if got := vt.APIKeys(); !reflect.DeepEqual(got, want) {
		t.Fatalf("APIKeys = %+v, want %+v", got, want)
	}

	for _, bad := range []struct {
		name          string
		key, min, max int16
	}{
		{"min above max", 1, 5, 4}, {"duplicate", 3, 0, 1}, {"negative min", 2, -1, 3}, {"negative key", -1, 0, 0},
	} {
		t.Run("panics on "+bad.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatalf("Register(%d, %d, %d) did not panic", bad.key, bad.min, bad.max)
				}
			}()
			vt.Register(bad.key, bad.min, bad.max)
		})
	}
	if got := vt.APIKeys(); !reflect.DeepEqual(got, want) {
		t.Fatalf("failed registrations changed the table: %+v", got)
	}
}

func TestApiVersionsResponseKIP511(t *testing.T) {
	var vt VersionTable
	vt.Register(18, 0, 4)
	vt.Register(3, 0, 12)
	wantKeys := vt.APIKeys()
	tests := []struct {
		name        string
		reqVersion  int16
		wantVersion int16
		wantCode    int16
	}{
		{"v0", 0, 0, 0},
		{"v3", 3, 3, 0},
		{"v4 (our max)", 4, 4, 0},
		{"v5 (newer than ours)", 5, 0, 35},
		{"v99 (newer than kmsg)", 99, 0, 35},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := vt.ApiVersionsResponse(tt.reqVersion)
			if resp.Version != tt.wantVersion || resp.ErrorCode != tt.wantCode {
				t.Fatalf("version %d code %d, want %d %d", resp.Version, resp.ErrorCode, tt.wantVersion, tt.wantCode)
			}
			if !reflect.DeepEqual(resp.ApiKeys, wantKeys) {
				t.Fatalf("ApiKeys = %+v, want %+v", resp.ApiKeys, wantKeys)
			}
			// A client reads the header as v0 and the body at the version it
			// expects: for a KIP-511 answer, v0.
			frame := AppendResponse(nil, 11, resp)
			dec := kmsg.NewPtrApiVersionsResponse()
			dec.SetVersion(tt.wantVersion)
			if err := dec.ReadFrom(frame[8:]); err != nil {
				t.Fatal(err)
			}
			if dec.ErrorCode != tt.wantCode || len(dec.ApiKeys) != len(wantKeys) || dec.ApiKeys[1].MaxVersion != 4 {
				t.Fatalf("client decoded code %d keys %+v", dec.ErrorCode, dec.ApiKeys)
			}
		})
	}

	var empty VersionTable
	if resp := empty.ApiVersionsResponse(0); resp.ErrorCode != 35 || resp.Version != 0 || len(resp.ApiKeys) != 0 {
		t.Fatalf("table without key 18: %+v", resp)
	}
}
