package coordinator

import (
	"strconv"
	"strings"
)

// keys builds every etcd key the Store uses; the layout is drawn in doc.go.
type keys struct{ prefix string }

func (k keys) clusterID() string             { return k.prefix + "/cluster/id" }
func (k keys) brokers() string               { return k.prefix + "/brokers/" }
func (k keys) broker(id int32) string        { return k.brokers() + strconv.FormatInt(int64(id), 10) }
func (k keys) topics() string                { return k.prefix + "/topics/" }
func (k keys) topic(name string) string      { return k.topics() + name }
func (k keys) topicSub(name string) string   { return k.topic(name) + "/" }
func (k keys) partitions(name string) string { return k.topicSub(name) + "partitions/" }
func (k keys) partition(name string, p int32) string {
	return k.partitions(name) + strconv.FormatInt(int64(p), 10)
}

// parseTopicsKey splits a key under topics() into the topic name and, for a
// partition-state key, its partition number (isPart=true). ok=false for keys
// of neither shape (ignored, so later additions under a topic stay readable).
func (k keys) parseTopicsKey(key string) (name string, part int32, isPart, ok bool) {
	rel, found := strings.CutPrefix(key, k.topics())
	if !found || rel == "" {
		return "", 0, false, false
	}
	name, rest, sub := strings.Cut(rel, "/")
	if !sub {
		return name, 0, false, true
	}
	ps, found := strings.CutPrefix(rest, "partitions/")
	if !found {
		return "", 0, false, false
	}
	n, err := strconv.ParseInt(ps, 10, 32)
	if err != nil || n < 0 {
		return "", 0, false, false
	}
	return name, int32(n), true, true
}
