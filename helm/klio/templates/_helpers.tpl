{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "klio.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object name: the release name, with the chart name unless it already has it. */}}
{{- define "klio.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "klio.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pod; never change them after a release (selectors are immutable). */}}
{{- define "klio.selectorLabels" -}}
app.kubernetes.io/name: {{ include "klio.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "klio.labels" -}}
helm.sh/chart: {{ include "klio.chart" . }}
{{ include "klio.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: klio
{{- end }}

{{- define "klio.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "klio.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "klio.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The metrics Service's name: the fullname, cut so that "-metrics" keeps it a DNS label. */}}
{{- define "klio.metricsServiceName" -}}
{{- printf "%s-metrics" (include "klio.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/*
A Prometheus duration (30s, 1m30s, 500ms) in milliseconds, to compare two of them.
*/}}
{{- define "klio.durationMilliseconds" -}}
{{- $units := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 "w" 604800000 "y" 31536000000 -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d|w|y)" . -1 -}}
{{- $count := regexFind "^[0-9]+" . | int64 -}}
{{- $unit := regexReplaceAll "^[0-9]+" . "" -}}
{{- $total = add $total (mul $count (get $units $unit)) -}}
{{- end -}}
{{- $total -}}
{{- end }}

{{/* An alert's labels: its severity, unless additionalAlertLabels says another (one key each). */}}
{{- define "klio.alertLabels" -}}
{{- toYaml (merge (deepCopy (.rule.additionalAlertLabels | default dict)) (dict "severity" .severity)) }}
{{- end }}
