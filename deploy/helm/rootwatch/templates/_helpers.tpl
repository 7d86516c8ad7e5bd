{{/* scripts/check-deploy.sh renders and lints this chart with the Helm v4
     SDK (scripts/helm_chart.py); values.schema.json rejects unknown keys. */}}

{{- define "rootwatch.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rootwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
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

{{/* The admin port (probes, /metrics): the port of [server] listen in the
     config, 9102 (rootwatch's default, 0.0.0.0:9102) when it sets none.
     The probes and the Service need the admin server: listen = "" (off)
     refuses to render. */}}
{{- define "rootwatch.adminPort" -}}
{{- $line := regexFind "(?m)^[ \t]*listen[ \t]*=[ \t]*\"[^\"]*\"" (include "rootwatch.liveConfig" .) -}}
{{- if not $line -}}
9102
{{- else -}}
{{- $addr := regexFind "\"[^\"]*\"" $line | trimAll "\"" -}}
{{- $port := regexFind ":[0-9]+$" $addr | trimPrefix ":" -}}
{{- if not $port -}}
{{- fail (printf "[server] listen = %q: the chart's probes, Service and metrics need the admin server on an address:port" $addr) -}}
{{- end -}}
{{- $port -}}
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

{{- define "rootwatch.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end -}}

{{/* The config without its comment lines: what rootwatch parses. */}}
{{- define "rootwatch.liveConfig" -}}
{{- range splitList "\n" .Values.config }}
{{- if not (hasPrefix "#" (trim .)) }}
{{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The environment variables the config interpolates (${VAR}; `$$` is a
     literal dollar), in order of first use, less those the chart or
     extraEnv already set: a JSON list. */}}
{{- define "rootwatch.configVars" -}}
{{- $live := replace "$$" "" (include "rootwatch.liveConfig" .) -}}
{{- $given := list "AWS_REGION" "RUST_LOG" -}}
{{- range .Values.extraEnv }}{{ $given = append $given .name }}{{ end -}}
{{- $vars := list -}}
{{- range regexFindAll "\\$\\{[A-Za-z0-9_]+\\}" $live -1 -}}
{{- $v := trimSuffix "}" (trimPrefix "${" .) -}}
{{- if not (or (has $v $given) (has $v $vars)) }}{{ $vars = append $vars $v }}{{ end -}}
{{- end -}}
{{- toJson $vars -}}
{{- end -}}

{{/* The container environment, shared by the Deployment and the test pod.
     Secrets are optional: only the variables the config uses are taken
     from existingSecret, and without existingSecret they must come from
     envFrom or extraEnv. */}}
{{- define "rootwatch.env" -}}
- name: AWS_REGION
  value: {{ .Values.awsRegion | quote }}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
{{- $vars := include "rootwatch.configVars" . | fromJsonArray }}
{{- if and $vars .Values.existingSecret }}
{{- range $vars }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.existingSecret }}
      key: {{ . }}
{{- end }}
{{- else if and $vars (not .Values.envFrom) }}
{{- fail (printf "config interpolates %s, which nothing supplies: set existingSecret to the Secret holding them, or supply them with envFrom or extraEnv" (join ", " $vars)) }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* KEDA adds and removes replicas at any time. A CloudWatch Logs source
     that keeps its checkpoints in a file (checkpoint_path, or no
     checkpoint_table) must run as exactly one replica: every replica would
     poll the same log groups and keep its own checkpoints. A source with a
     DynamoDB checkpoint_table shares checkpoints and leases, so it scales. */}}
{{- define "rootwatch.checkKeda" -}}
{{- if .Values.keda.enabled -}}
{{- range regexSplit "(?m)^[ \\t]*\\[" (include "rootwatch.liveConfig" .) -1 -}}
{{- if and (hasPrefix "[sources]]" .) (regexMatch "(?m)^[ \\t]*type[ \\t]*=[ \\t]*[\"']cloudwatch_logs[\"']" .) (not (regexMatch "(?m)^[ \\t]*checkpoint_table[ \\t]*=" .)) -}}
{{- fail "keda.enabled cannot be used with a cloudwatch_logs source that keeps file checkpoints: every replica would poll the same log groups. Give the source a DynamoDB checkpoint_table, or disable KEDA and run one replica" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.keda.podIdentity.roleArn (eq .Values.keda.podIdentity.identityOwner "workload") -}}
{{- fail "keda.podIdentity.roleArn is for identityOwner keda; with identityOwner workload KEDA uses the service account's role" -}}
{{- end -}}
{{- end -}}
{{- end -}}
