{{- define "registry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "registry.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The peers' Service; part of the StatefulSet's immutable spec: never rename. */}}
{{- define "registry.headless" -}}
{{- printf "%s-headless" (include "registry.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Immutable in the StatefulSet: never add to or change these. */}}
{{- define "registry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "registry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "registry.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "registry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "registry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "registry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "registry.clusterSecretName" -}}
{{- default (printf "%s-cluster" (include "registry.fullname" .)) .Values.cluster.existingSecret -}}
{{- end -}}

{{- define "registry.s3SecretName" -}}
{{- default (printf "%s-s3" (include "registry.fullname" .)) .Values.s3.existingSecret -}}
{{- end -}}

{{- define "registry.s3Credentials" -}}
{{- or .Values.s3.existingSecret .Values.s3.accessKey -}}
{{- end -}}

{{/* The initial members, ID=HOST:PORT, node id = pod index + 1. */}}
{{- define "registry.peers" -}}
{{- $fullname := include "registry.fullname" . -}}
{{- $headless := include "registry.headless" . -}}
{{- $peers := list -}}
{{- range $i := until (int .Values.replicaCount) -}}
{{- $peers = append $peers (printf "%d=%s-%d.%s.%s.svc.%s:5101" (add1 $i) $fullname $i $headless $.Release.Namespace $.Values.clusterDomain) -}}
{{- end -}}
{{- join "," $peers -}}
{{- end -}}

{{- define "registry.blobsClaim" -}}
{{- default (printf "%s-blobs" (include "registry.fullname" .)) .Values.persistence.blobs.existingClaim -}}
{{- end -}}

{{/* Whether config.storage names a blob backend of its own. */}}
{{- define "registry.storageBackend" -}}
{{- $storage := default dict .Values.config.storage -}}
{{- range $backend := list "filesystem" "inmemory" "s3" "azure" "gcs" "swift" "oss" -}}
{{- if hasKey $storage $backend -}}{{ $backend }}{{- end -}}
{{- end -}}
{{- end -}}

{{/* The config file: values.config, with blobs on the mounted volume when it names no backend. */}}
{{- define "registry.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- if not (include "registry.storageBackend" .) -}}
{{- if not .Values.persistence.blobs.enabled -}}
{{- fail "no blob storage: configure a backend in config.storage (s3, azure, gcs, swift, oss) or enable persistence.blobs" -}}
{{- end -}}
{{- $storage := default dict $config.storage -}}
{{- $_ := set $storage "filesystem" (dict "rootdirectory" "/var/lib/registry/blobs") -}}
{{- $_ := set $config "storage" $storage -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* The Secrets mounted under /etc/registry-secrets/<volume>, as volume: Secret name. */}}
{{- define "registry.secretVolumes" -}}
{{- with .Values.tls.existingSecret }}
tls: {{ . }}
{{- end }}
{{- with .Values.cluster.tls.existingSecret }}
cluster-tls: {{ . }}
{{- end }}
{{- with .Values.metrics.tls.existingSecret }}
metrics-tls: {{ . }}
{{- end }}
{{- with .Values.auth.htpasswd.existingSecret }}
htpasswd: {{ . }}
{{- end }}
{{- with .Values.auth.tokenService.existingSecret }}
token: {{ . }}
{{- end }}
{{- end }}
