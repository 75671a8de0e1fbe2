#!/bin/sh
# `make image`: build modlib's container images from the repository root, one per NAME=CONTAINERFILE
# argument, as REGISTRY/NAME:TAG, with podman, docker or buildah (the first found; TOOL overrides it,
# TOOL=print only prints the commands). PUSH=1 also pushes each image and prints its digest and where
# to pin it: the builder in the site overlay's kustomization (`images:`) and in library.yaml
# (`kubernetes.image`, for build Jobs); the notebook image in the hub's values (`singleuser.image`).
set -eu
: "${REGISTRY:?}" "${TAG:?}"
tool=${TOOL:-$(command -v podman || command -v docker || command -v buildah || echo print)}
run() {
    if [ "$tool" = print ]; then echo "$*"; else (set -x; "$@"); fi
}
[ "$tool" = print ] && echo "# no podman, docker or buildah found (or TOOL=print): the commands to run are"
for spec in "$@"; do
    name=${spec%%=*}
    file=${spec#*=}
    ref="$REGISTRY/$name:$TAG"
    cli=${tool##*/}
    case $cli in
        buildah) run "$tool" bud -f "$file" -t "$ref" . ;;
        print) run podman build -f "$file" -t "$ref" . ;;
        *) run "$tool" build -f "$file" -t "$ref" . ;;
    esac
    [ "${PUSH:-}" = 1 ] || continue
    digestfile=$(mktemp)
    case $cli in
        docker)
            run docker push "$ref"
            docker image inspect --format '{{index .RepoDigests 0}}' "$ref" | sed 's/.*@//' > "$digestfile" ;;
        print) run podman push --digestfile "$name.digest" "$ref"; echo "sha256:..." > "$digestfile" ;;
        *) run "$tool" push --digestfile "$digestfile" "$ref" ;;
    esac
    digest=$(cat "$digestfile")
    rm -f "$digestfile"
    case $name in
        builder) cat <<EOF
# pin $name by digest: in your site overlay's kustomization.yaml (k8s-jobs/examples/site/kustomization.yaml)
images:
  - name: ghcr.io/modlib/$name
    newName: $REGISTRY/$name
    digest: $digest
# and in library.yaml (build Jobs take their image from there):
#   kubernetes: {image: "$REGISTRY/$name@$digest"}
EOF
        ;;
        notebook) cat <<EOF
# pin $name by digest: in the hub's Helm values (k8s-jobs/overlays/notebook/z2jh-values.yaml)
singleuser:
  image:
    name: $REGISTRY/$name
    tag: "$TAG@$digest"
EOF
        ;;
    esac
done
