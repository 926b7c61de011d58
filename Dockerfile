# rlhfd on Debian 12, built with the same Makefile as a developer machine.
#   docker build -t rlhfd .
#   docker run --rm -p 8080:8080 -v rlhfd-data:/data rlhfd
#   docker run --rm -v rlhfd-data:/data rlhfd rlhfd --db /data/rlhfd.db --create-token root --role admin
#   docker run --rm rlhfd rlhf-train ppo-control --eval-interval 1 --target-return 475
FROM debian:12-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends make ca-certificates \
        nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# make web: npm ci from clients/web's lockfile, assets into build/web
RUN make deps && make -j"$(nproc)" all && make web

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
        libopenblas0-pthread libjansson4 libsqlite3-0 libmicrohttpd12 libcurl4 \
        libopenmpi3 openmpi-bin \
    && rm -rf /var/lib/apt/lists/*
# rlhfd starts rlhf-train from its own directory.
COPY --from=build /src/build/rlhfd /src/build/rlhf-train /src/build/rlhfctl /usr/local/bin/
# the web client (annotator page and dashboard) that rlhfd serves at /
COPY --from=build /src/build/web /usr/local/share/rlhfd/web
ENV RLHFD_WEB_ROOT=/usr/local/share/rlhfd/web
VOLUME /data
WORKDIR /data
EXPOSE 8080
# Inside a container the daemon must listen beyond loopback to be reachable.
CMD ["rlhfd", "--listen", "0.0.0.0:8080", "--db", "/data/rlhfd.db"]
