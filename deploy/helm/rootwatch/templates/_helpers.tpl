{{/* Keep these helpers to plain field access, include, default, trunc,
     trimSuffix, quote, toYaml, nindent and if/else: scripts/render_helm.py
     renders the chart without helm and rejects anything else. */}}

{{- define "rootwatch.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rootwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rootwatch.labels" -}}
{{ include "rootwatch.selectorLabels" . }}
app.kubernetes.io/part-of: rootwatch
app.kubernetes.io/component: detector
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "rootwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rootwatch.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}
