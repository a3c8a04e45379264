# etcd built from the module Strata already depends on
# (go.etcd.io/etcd/server/v3), static, on an empty image.
FROM scratch
COPY etcd /etcd
VOLUME /data
EXPOSE 2379
ENTRYPOINT ["/etcd"]
