# rlhfd on Debian 12: build with the same Makefile as a developer machine.
#   docker build -t rlhfd .
#   docker run --rm rlhfd                      # control PPO demo (CartPole)
#   docker run --rm rlhfd rlhf-train describe  # the hyperparameter tables
FROM debian:12-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends make ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make deps && make -j"$(nproc)" all

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
        libopenblas0-pthread libjansson4 libsqlite3-0 libmicrohttpd12 libcurl4 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/rlhf-train /usr/local/bin/
WORKDIR /data
CMD ["rlhf-train", "ppo-control", "--env", "CartPole-v1", "--eval-interval", "1", "--target-return", "475"]
