"""villageami.sim"""
