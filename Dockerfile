# One image for every StoryForge binary (storyforge-api, storyforge-worker, storyforge);
# docker-compose.yml and deploy/kubernetes/ pick the command. The prompt templates are
# compiled into the binaries, so the image holds nothing else of the repository.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin storyforge-api --bin storyforge-worker --bin storyforge

FROM debian:bookworm-slim
# ca-certificates for HTTPS providers and webhooks; curl for container health checks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/storyforge --create-home storyforge
COPY --from=build /src/target/release/storyforge-api /src/target/release/storyforge-worker /src/target/release/storyforge /usr/local/bin/
USER 10001
WORKDIR /var/lib/storyforge
ENV STORYFORGE_API_ADDR=0.0.0.0:8080
EXPOSE 8080
CMD ["storyforge-api"]
