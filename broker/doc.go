// Package broker is the Strata server: listeners and connections
// (responses in request order, none for acks=0), one file per Kafka API,
// the partition table built from the topic records in etcd, the produce
// path (validate, stamp, append) and fetch long-polling.
//
// It owns the partitions this broker holds and their local logs
// (broker/locallog). It must never decode or re-encode a record batch on
// the produce path, and never take a lock while doing I/O on behalf of
// another partition. Wire encoding lives in kafkaproto; cluster metadata in
// coordinator.
//
// Each API file opens with the versions it serves and what it does not do;
// ApiVersions answers from the table the files register (registerAPIs), so
// nothing is advertised that is not implemented.
package broker
