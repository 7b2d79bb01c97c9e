{{/*
Helpers. The chart keeps to the Go template and Sprig subset that test/helpers/helm-render.ts
implements (the render test has no helm binary): no dict, index, tpl or lookup.
*/}}

{{- define "hearth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-hearth, or the release name alone when it already contains the chart name. */}}
{{- define "hearth.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "hearth.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "hearth.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hearth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hearth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hearth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" }}
{{ include "hearth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
hearth.dev/env: {{ .Values.env }}
{{- end -}}

{{- define "hearth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hearth.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, the tag being <version>-<env>-<build> unless image.tag pins one. */}}
{{- define "hearth.image" -}}
{{- $tag := .Values.image.tag -}}
{{- if not $tag -}}
{{- $version := .Values.image.version | default .Chart.AppVersion -}}
{{- $env := .Values.image.env | default .Values.env -}}
{{- $build := required "image.build (the CI build number) is required unless image.tag is set" .Values.image.build -}}
{{- $tag = printf "%s-%s-%s" (toString $version) $env (toString $build) -}}
{{- end -}}
{{- printf "%s:%s" .Values.image.repository (toString $tag) -}}
{{- end -}}

{{/* Fails the render early on settings that cannot work. */}}
{{- define "hearth.validate" -}}
{{- if not (or (eq .Values.env "dev") (eq .Values.env "test") (eq .Values.env "gray") (eq .Values.env "baseline")) -}}
{{- fail (printf "env must be one of dev, test, gray, baseline; got %q" .Values.env) -}}
{{- end -}}
{{- if not (or .Values.database.url .Values.database.existingSecret) -}}
{{- fail "database.url or database.existingSecret is required: cluster mode runs on PostgreSQL" -}}
{{- end -}}
{{- $_ := required "nats.url is required: cluster mode runs on NATS with JetStream" .Values.nats.url -}}
{{- range $name, $role := .Values.roles -}}
{{- if not (or (eq $name "gateway") (eq $name "api") (eq $name "worker")) -}}
{{- fail (printf "roles.%s: the roles are gateway, api and worker" $name) -}}
{{- end -}}
{{- if and $role.pdb.enabled $role.pdb.minAvailable $role.pdb.maxUnavailable -}}
{{- fail (printf "roles.%s.pdb: set minAvailable or maxUnavailable, not both" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap's data; also hashed into the pods' checksum/config annotation. */}}
{{- define "hearth.configData" -}}
HEARTH_HTTP_PORT: {{ .Values.http.port | int | quote }}
HEARTH_MQTT_PORT: {{ .Values.mqtt.port | int | quote }}
HEARTH_DATA_DIR: "/data"
HEARTH_DEMO: "0"
HEARTH_NATS_URL: {{ .Values.nats.url | quote }}
HEARTH_DRAIN_DELAY_MS: {{ .Values.shutdown.drainDelayMs | int | quote }}
HEARTH_DISCONNECT_RATE_PER_SECOND: {{ .Values.shutdown.disconnectRatePerSecond | int | quote }}
HEARTH_ADMIN_EMAIL: {{ .Values.admin.email | quote }}
{{- if .Values.publicUrl }}
HEARTH_PUBLIC_URL: {{ .Values.publicUrl | quote }}
{{- end }}
{{- range $key, $value := .Values.config }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* The chart Secret's data (only what is given inline); hashed into checksum/secret. */}}
{{- define "hearth.secretData" -}}
{{- if .Values.database.url }}
HEARTH_DATABASE_URL: {{ .Values.database.url | b64enc }}
{{- end }}
{{- if .Values.admin.password }}
HEARTH_ADMIN_PASSWORD: {{ .Values.admin.password | b64enc }}
{{- end }}
{{- if .Values.smtp.url }}
HEARTH_SMTP_URL: {{ .Values.smtp.url | b64enc }}
{{- end }}
{{- end -}}

