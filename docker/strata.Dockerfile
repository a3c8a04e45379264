# The strata broker: a static binary on an empty image. Built by
# scripts/build-images.sh from binaries compiled on the host (no registry is
# needed: nothing is pulled).
FROM scratch
COPY strata /strata
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
VOLUME /data
EXPOSE 9092 9644
ENTRYPOINT ["/strata"]
CMD ["serve", "--data-dir", "/data", "--listen", "0.0.0.0:9092", "--metrics-listen", "0.0.0.0:9644"]
