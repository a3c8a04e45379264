# MinIO built from the Go module proxy with CGO_ENABLED=0 (see
# scripts/build-images.sh), on an empty image.
FROM scratch
COPY minio /minio
VOLUME /data
EXPOSE 9000
ENTRYPOINT ["/minio"]
CMD ["server", "/data", "--address", ":9000"]
