"""villageami.hes"""
