# goblocks node image: the static binary from `make build` on an empty base.
#
#   make image            # builds bin/goblocks, then this image (IMAGE ?= goblocks:latest)
#
# FROM scratch needs no registry, so the image builds offline. The context
# is only bin/goblocks and bin/image-root (see .dockerignore); `make image`
# prepares bin/image-root/data, an empty directory, because scratch has no
# shell to mkdir and chown /data.
FROM scratch

COPY bin/goblocks /goblocks
# Copies bin/image-root/data as /data, owned by the unprivileged user.
COPY --chown=65532:65532 bin/image-root/ /

# The node keeps its data (with ClaimSlot, one slot directory per replica)
# under /data. No VOLUME line: it would leave an anonymous volume behind
# every container run without a mount; compose mounts a named volume, which
# Docker seeds with this directory's owner on first use.
ENV DataDir=/data
USER 65532:65532
EXPOSE 3000

# The `health` subcommand probes http://127.0.0.1:3000/health (scratch has
# no curl). A short interval lets `depends_on: service_healthy` and
# `docker ps` notice a started node quickly.
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 CMD ["/goblocks", "health"]

ENTRYPOINT ["/goblocks"]
CMD ["node"]
