%
+
.bat
.exe
union select
