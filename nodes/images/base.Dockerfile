# Podium's base image for sessions: Debian with Python 3 and the in-session SDK.
# `podium image build` makes the root image it starts from offline (debootstrap from the
# distribution's packages, then `docker import`), since no registry may be reachable.
#
# Sessions' Python is a virtual environment that sees the distribution's packages (the
# scientific variant's numpy, scipy, scikit-learn, pandas) and takes what an
# environment's requirements.txt installs. It belongs to `nobody`, the user environment
# builds install as.
ARG ROOT=podium/debian-root:bookworm
FROM ${ROOT}
RUN python3 -m venv --system-site-packages /opt/podium/venv \
 && chown -R 65534:65534 /opt/podium/venv
COPY cli /opt/podium/cli
ENV PATH=/opt/podium/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/opt/podium \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8
WORKDIR /podium/code
CMD ["python3"]
