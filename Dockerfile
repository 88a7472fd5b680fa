# syntax=docker/dockerfile:1
# Build stage: compile the release binary.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin switchyard

# Runtime stage: a small image with only the binary and CA certificates.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20230311+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home switchyard \
    && mkdir -p /var/lib/switchyard \
    && chown 10001 /var/lib/switchyard
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
COPY routes.toml /etc/switchyard/routes.toml
USER 10001
# State, events and keys files named relatively in routes.toml land here.
WORKDIR /var/lib/switchyard
ENV SWITCHYARD_CONFIG=/etc/switchyard/routes.toml
EXPOSE 8080 9901
# Mount your own table over /etc/switchyard/routes.toml.
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["serve"]
