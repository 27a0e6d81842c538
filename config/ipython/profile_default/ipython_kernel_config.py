# Kernel settings for executing the notebooks (make test, make run-notebooks).
# TensorFlow's C++ runtime writes log lines straight to file descriptor 2; when
# the kernel captures fd output those lines land in whichever cell runs next and
# make stored outputs differ from run to run. Leave them on the terminal.
c.IPKernelApp.capture_fd_output = False
