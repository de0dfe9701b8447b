# Podium's base image for sessions: Debian with Python 3 and the in-session SDK.
# `podium image build` makes the root image it starts from offline (debootstrap from the
# distribution's packages, then `docker import`), since no registry may be reachable.
ARG ROOT=podium/debian-root:bookworm
FROM ${ROOT}
COPY cli /opt/podium/cli
ENV PYTHONPATH=/opt/podium \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8
WORKDIR /podium/code
CMD ["python3"]
