%
&
+
<script
javascript:
