{{/* scripts/check-deploy.sh renders and lints this chart with the Helm v4
     SDK (scripts/helm_chart.py); values.schema.json rejects unknown keys. */}}

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

{{/* [shutdown] grace_secs as the config in values sets it; 25 (rootwatch's
     default) when it does not. */}}
{{- define "rootwatch.graceSecs" -}}
{{- if regexFind "(?m)^[ \t]*grace_secs[ \t]*=" .Values.config -}}
{{- regexFind "[0-9]+" (regexFind "(?m)^[ \t]*grace_secs[ \t]*=[ \t]*[0-9]+" .Values.config) -}}
{{- else -}}
25
{{- end -}}
{{- end -}}

{{/* The pod's terminationGracePeriodSeconds. After SIGTERM rootwatch takes
     up to grace_secs to finish deliveries, then up to 5 s (HAND_BACK in
     src/app.rs) to hand unfinished SQS messages back; the kubelet's SIGKILL
     must come later. Derived from the config (grace + 5 + 15 s margin) so
     the two cannot drift; an explicit value must leave at least 5 s of
     margin or the chart refuses to render. */}}
{{- define "rootwatch.terminationGracePeriodSeconds" -}}
{{- if .Values.terminationGracePeriodSeconds -}}
{{- if lt (int .Values.terminationGracePeriodSeconds) (add (atoi (include "rootwatch.graceSecs" .)) 10) -}}
{{- fail "terminationGracePeriodSeconds must be at least [shutdown] grace_secs + 10 (5 s to hand back unfinished messages, 5 s margin); leave it empty to derive it from the config" -}}
{{- end -}}
{{- int .Values.terminationGracePeriodSeconds -}}
{{- else -}}
{{- add (atoi (include "rootwatch.graceSecs" .)) 20 -}}
{{- end -}}
{{- end -}}
